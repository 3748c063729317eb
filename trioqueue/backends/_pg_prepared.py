"""Statements on a Trio-native connection as server-side prepared statements, with no cursor.

A pooled connection runs the driver's few statements thousands of times, so
each one is prepared once per connection and then only executed: psycopg's
``PostgresQuery`` turns the query and its parameters into libpq's form (with
psycopg's own adapters), libpq sends them, and psycopg's ``Transformer``
reads the rows back. Skipping the cursor (its description, its prepare
bookkeeping) halves the Python cost of a statement here.

psycopg internals used, hence the pinned psycopg versions:
``psycopg._queries.PostgresQuery`` and ``psycopg._encodings.conn_encoding``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import msgspec
import psycopg
from psycopg import errors, generators, pq
from psycopg._encodings import conn_encoding
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer
from psycopg.types.json import set_json_loads

from ._pg_native import Connection, Params, Query, Row, wait

__all__ = ["PreparedConnection"]

_FATAL = pq.ExecStatus.FATAL_ERROR
_COPY_IN = pq.ExecStatus.COPY_IN
_IN_TX = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
_TUPLES = pq.ExecStatus.TUPLES_OK
#: Statements a connection keeps prepared at most (the driver has about 20).
MAX_PREPARED = 64


class PreparedConnection:
    """A Trio-native connection that runs each distinct statement as a prepared one.

    Args:
      conn: An open autocommit connection (``_pg_native.connect``).

    Error handling:
      A statement's error is psycopg's, as the cursor would raise it. A lost
      connection raises ``psycopg.OperationalError`` (or a subclass).
    """

    __slots__ = ("_names", "_queries", "_tx", "conn", "durable")

    def __init__(self, conn: Connection) -> None:
        # json and jsonb values (meta, the settled ids) decode with msgspec: it
        # is many times faster than the standard library's json.loads.
        set_json_loads(msgspec.json.decode, conn)
        self.conn = conn
        #: Whether commits wait for the disk (``synchronous_commit``), as last set.
        self.durable = True
        self._tx = Transformer(conn)
        # (query, parameter types) -> prepared statement name
        self._names: dict[tuple[object, tuple[int, ...]], bytes] = {}
        # query text -> its conversion to libpq's form, reused for each call's
        # parameters (a str's hash is computed once, a Composed's every time)
        self._queries: dict[str, PostgresQuery] = {}

    async def execute(self, query: Query, params: Params) -> list[Row]:
        """Run ``query`` (``%s`` or ``%(name)s`` placeholders) and return its rows.

        Raises:
          psycopg.Error: what the server or psycopg raised for the statement.
        """
        pgconn = self.conn.pgconn
        key_query: object
        if isinstance(query, str):
            pgq = self._queries.get(query)
            if pgq is None:
                pgq = self._queries[query] = PostgresQuery(self._tx)
                pgq.convert(query, params)
            else:
                pgq.dump(params)
            key_query = query
        else:
            pgq = PostgresQuery(self._tx)
            pgq.convert(query, params)
            key_query = pgq.query
        key = (key_query, pgq.types)
        name = self._names.get(key)
        if name is None:
            if len(self._names) >= MAX_PREPARED:
                await self._deallocate_all()
            name = f"_tq_{len(self._names)}".encode()
            pgconn.send_prepare(name, pgq.query, param_types=pgq.types)
            self._check(await wait(generators.execute(pgconn), pgconn.socket))
            self._names[key] = name
        pgconn.send_query_prepared(name, pgq.params, param_formats=pgq.formats)
        return self._rows(await wait(generators.execute(pgconn), pgconn.socket))

    async def copy_in(self, copy: str, data: Iterable[bytes], after: str) -> None:
        """In one transaction: ``COPY ... FROM STDIN`` the ``rows`` and run ``after``; commit.

        One query of two statements, ``after`` then the COPY: the server runs
        them as one implicit transaction and commits when the COPY ends, so
        the whole call is two round trips (the COPY's start, its end).

        Args:
          copy: The ``COPY table (columns) FROM STDIN`` statement.
          data: The COPY data in the statement's format, in pieces (a lazy
            iterable: the server works on a piece while the next is made).
          after: Statements (simple protocol, no parameters) whose effect
            comes with the commit (a NOTIFY); nothing if the COPY fails.

        Raises:
          psycopg.Error: the server refused a row, the statement or the commit;
            nothing was committed, and the connection is idle again if it can be.
        """
        pgconn = self.conn.pgconn
        fd = pgconn.socket
        if not self.durable:
            await self.set_durable(True)
        copying = False
        try:
            pgconn.send_query(after.encode() + b"; " + copy.encode())
            results = await wait(generators.execute(pgconn), fd)
            if results[-1].status != _COPY_IN:
                self._check(results)
                raise errors.ProgrammingError(f"not a COPY FROM STDIN: {copy[:60]!r}")
            copying = True
            for piece in data:
                await wait(generators.copy_to(pgconn, piece, True), fd)
            copying = False
            await wait(generators.copy_end(pgconn, None), fd)
        except Exception:
            if copying:  # a row that could not be made: abort the COPY on the server
                with contextlib.suppress(psycopg.Error):
                    await wait(generators.copy_end(pgconn, b"aborted by the client"), fd)
            if pgconn.status == pq.ConnStatus.OK and pgconn.transaction_status in _IN_TX:
                with contextlib.suppress(psycopg.Error):
                    await self._simple(b"ROLLBACK")
            raise

    async def set_durable(self, durable: bool) -> None:
        """Turn ``synchronous_commit`` on or off for the statements that follow."""
        await self._simple(b"SET synchronous_commit = " + (b"on" if durable else b"off"))
        self.durable = durable

    async def _simple(self, statement: bytes) -> None:
        pgconn = self.conn.pgconn
        pgconn.send_query(statement)
        self._check(await wait(generators.execute(pgconn), pgconn.socket))

    async def _deallocate_all(self) -> None:
        await self._simple(b"DEALLOCATE ALL")
        self._names.clear()

    def _check(self, results: list[pq.abc.PGresult]) -> None:
        for res in results:
            if res.status == _FATAL:
                raise errors.error_from_result(res, encoding=conn_encoding(self.conn))

    def _rows(self, results: list[pq.abc.PGresult]) -> list[Row]:
        self._check(results)
        rows: list[Row] = []
        tx = self._tx
        for res in results:
            if res.status == _TUPLES:
                tx.set_pgresult(res)
                rows.extend(tx.load_rows(0, res.ntuples, tuple))
        tx.set_pgresult(None)
        return rows

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
