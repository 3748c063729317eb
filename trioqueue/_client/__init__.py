"""The producers outside Trio: ``trioqueue.sync.Client`` and ``trioqueue.asyncio.open_client``.

``_common`` builds and checks records with the Trio backends' own code
(``TaskSink._record``) and reads them back; ``_sqlite`` and ``_pg`` run the
drivers' own statements on blocking connections, ``_pg_async`` on psycopg's
asyncio connections.
"""
