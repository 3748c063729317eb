"""psycopg's own APIs as statement runners: ``AsyncioRunner`` and ``ThreadRunner``.

- ``AsyncioRunner``: psycopg's ``AsyncConnection`` on a trio-asyncio loop.
- ``ThreadRunner``: psycopg's sync ``Connection`` in ``trio.to_thread``; the
  LISTEN connection waits for its socket in Trio itself.

Both follow the ``Runner`` protocol of ``_pg_runner``. A connection that
failed, or whose call was interrupted, is closed and replaced on the next
call. They commit every statement durably.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import trio
from psycopg import sql

from ._pg_listen import Channels, OnNotify, OnReady
from ._pg_native import (
    Params,
    Query,
    Row,
    backoff,
    fetch_on_callers,
    setup_sql,
)

__all__ = ["AsyncioRunner", "ThreadRunner"]

log = logging.getLogger("trioqueue.backends.postgres")


class _Pool:
    """A bounded set of connections, made lazily; broken ones are dropped."""

    def __init__(self, size: int) -> None:
        self._idle: list[Any] = []
        self._slots = trio.Semaphore(size)
        self._all: set[Any] = set()

    def take(self) -> Any | None:
        return self._idle.pop() if self._idle else None

    def give(self, conn: Any) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.drop(conn)
        else:
            self._idle.append(conn)

    def drop(self, conn: Any) -> None:
        self._all.discard(conn)
        if not conn.closed:
            conn.pgconn.finish()  # sync: sends Terminate and closes the socket

    def forget(self, conn: Any) -> None:
        """Stop tracking ``conn`` without closing it (its thread will)."""
        self._all.discard(conn)

    def add(self, conn: Any) -> None:
        self._all.add(conn)

    def close_all(self) -> None:
        for conn in list(self._all):
            self.drop(conn)
        self._idle.clear()


def _use_patched_loop_lookup() -> None:
    # psycopg.waiting binds asyncio's C ``get_running_loop`` at import time; if
    # psycopg was imported before trio_asyncio, that binding misses the loop
    # trio-asyncio runs in this task. Point it at the (patched) asyncio one,
    # which behaves exactly as before outside Trio.
    import asyncio

    import psycopg.waiting

    if getattr(psycopg.waiting, "get_running_loop", None) is not asyncio.get_running_loop:
        setattr(psycopg.waiting, "get_running_loop", asyncio.get_running_loop)  # noqa: B010


class AsyncioRunner:
    """psycopg's async API on a trio-asyncio loop, one loop crossing per call.

    Args:
      url: The libpq connection string or URL.
      loop: The trio-asyncio loop the connections live on.
      pool_size: Most connections open at once for statements.
      statement_timeout: Seconds before the server cancels a statement.
      connect_timeout: Seconds to wait for a connection.
    """

    def __init__(
        self,
        url: str,
        *,
        loop: Any,
        pool_size: int,
        statement_timeout: float,
        connect_timeout: float,
    ) -> None:
        import trio_asyncio

        _use_patched_loop_lookup()
        self._aio_as_trio = trio_asyncio.aio_as_trio
        self._url = url
        self._loop = loop
        self._pool = _Pool(pool_size)
        self._setup = setup_sql(statement_timeout)
        self._connect_timeout = connect_timeout

    async def _connect(self) -> psycopg.AsyncConnection[Row]:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
        )
        try:
            await conn.execute(self._setup)
        except BaseException:
            conn.pgconn.finish()
            raise
        return conn

    async def _run(
        self, conn: psycopg.AsyncConnection[Row] | None, query: Query, params: Params
    ) -> tuple[psycopg.AsyncConnection[Row], list[Row]]:
        if conn is None:
            conn = await self._connect()
            self._pool.add(conn)
        try:
            cur = await conn.execute(query, params)
            rows = list(await cur.fetchall()) if cur.description is not None else []
        except BaseException:
            self._pool.drop(conn)
            raise
        return conn, rows

    async def fetch(self, query: Query, params: Params, *, durable: bool = True) -> list[Row]:
        """Run one statement on a pooled connection and return its rows (always durably)."""
        async with self._pool._slots:
            taken = self._pool.take()
            rows: list[Row]
            try:
                conn, rows = await self._aio_as_trio(self._run, loop=self._loop)(
                    taken, query, params
                )
            except BaseException:
                if taken is not None:
                    self._pool.drop(taken)
                raise
            self._pool.give(conn)
            return rows

    async def copy_in(self, copy: str, data: Iterable[bytes], after: str) -> None:
        """COPY in one transaction (see ``Runner.copy_in``)."""

        async def run(conn: psycopg.AsyncConnection[Row]) -> None:
            async with conn.transaction():
                async with conn.cursor().copy(copy.encode()) as cp:
                    for piece in data:
                        await cp.write(piece)
                await conn.execute(after.encode())

        async with self._pool._slots:
            conn = self._pool.take()
            try:
                if conn is None:
                    conn = await self._aio_as_trio(self._connect, loop=self._loop)()
                    self._pool.add(conn)
                await self._aio_as_trio(run, loop=self._loop)(conn)
            except BaseException:
                if conn is not None:
                    self._pool.drop(conn)
                raise
            self._pool.give(conn)

    async def fetch_on(self, conn: object, query: Query, params: Params) -> list[Row]:
        """Run one statement on the caller's connection (see ``Runner.fetch_on``)."""
        return await fetch_on_callers(conn, query, params, self._loop)

    async def _listen_aio(
        self,
        names: list[str],
        on_notify: OnNotify,
        on_ready: OnReady,
        on_listening: Callable[[], None],
    ) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
        )
        try:
            for name in names:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
            on_ready(len(names))
            on_listening()
            async for n in conn.notifies():
                on_notify(n.channel, n.payload)
        finally:
            conn.pgconn.finish()

    async def listen(self, channels: Channels, on_notify: OnNotify, on_ready: OnReady) -> None:
        """LISTEN forever, reconnecting with backoff (and to add channels)."""
        n = 0

        def listening() -> None:
            nonlocal n
            n = 0  # connected again: the next loss starts the backoff afresh

        while True:
            names = list(channels.names)
            try:
                # A channel added: connect again, listening on all of them.
                with channels.until_grown(len(names)):
                    await self._aio_as_trio(self._listen_aio, loop=self._loop)(
                        names, on_notify, on_ready, listening
                    )
            except (psycopg.Error, OSError) as exc:
                n += 1
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                on_ready(0)  # wake waiters: they poll while we reconnect
                await backoff(n)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        self._pool.close_all()


class ThreadRunner:
    """psycopg's sync API in worker threads, one thread hop per call.

    Statements run in ``trio.to_thread.run_sync``. A cancelled call abandons
    its thread (a server that stopped answering cannot hang shutdown); the
    thread closes that connection when the statement ends, and it never goes
    back to the pool. The LISTEN connection waits on its socket in Trio.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int,
        statement_timeout: float,
        connect_timeout: float,
    ) -> None:
        self._url = url
        self._pool = _Pool(pool_size)
        self._setup = setup_sql(statement_timeout)
        self._connect_timeout = connect_timeout
        self._limiter = trio.CapacityLimiter(pool_size)

    def _connect(self) -> psycopg.Connection[Row]:
        conn = psycopg.Connection.connect(
            self._url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
        )
        try:
            conn.execute(self._setup)
        except BaseException:
            conn.pgconn.finish()
            raise
        return conn

    def _run(
        self, conn: psycopg.Connection[Row] | None, query: Query, params: Params
    ) -> tuple[psycopg.Connection[Row], list[Row]]:
        if conn is None:
            conn = self._connect()
            self._pool.add(conn)
        try:
            cur = conn.execute(query, params)
            rows = cur.fetchall() if cur.description is not None else []
        except BaseException:
            self._pool.drop(conn)
            raise
        return conn, rows

    async def fetch(self, query: Query, params: Params, *, durable: bool = True) -> list[Row]:
        """Run one statement on a pooled connection in a thread and return its rows (durably)."""
        async with self._pool._slots:
            taken = self._pool.take()
            abandoned = False

            def run() -> tuple[psycopg.Connection[Row], list[Row]]:
                conn, rows = self._run(taken, query, params)
                if abandoned:  # nobody will take this connection back
                    self._pool.drop(conn)
                return conn, rows

            try:
                conn, rows = await trio.to_thread.run_sync(
                    run, limiter=self._limiter, abandon_on_cancel=True
                )
            except trio.Cancelled:
                # The thread may still be using it: it closes it itself, later.
                abandoned = True
                if taken is not None:
                    self._pool.forget(taken)
                raise
            except BaseException:
                if taken is not None:
                    self._pool.drop(taken)
                raise
            self._pool.give(conn)
            return rows

    async def copy_in(self, copy: str, data: Iterable[bytes], after: str) -> None:
        """COPY in one transaction, in a worker thread (see ``Runner.copy_in``)."""
        async with self._pool._slots:
            taken = self._pool.take()

            def run() -> psycopg.Connection[Row]:
                conn = taken if taken is not None else self._connect()
                if taken is None:
                    self._pool.add(conn)
                try:
                    with conn.transaction():
                        with conn.cursor().copy(copy.encode()) as cp:
                            for piece in data:
                                cp.write(piece)
                        conn.execute(after.encode())
                except BaseException:
                    self._pool.drop(conn)
                    raise
                return conn

            conn = await trio.to_thread.run_sync(run, limiter=self._limiter)
            self._pool.give(conn)

    async def fetch_on(self, conn: object, query: Query, params: Params) -> list[Row]:
        """Run one statement on the caller's connection (see ``Runner.fetch_on``)."""
        return await fetch_on_callers(conn, query, params, None)

    async def listen(self, channels: Channels, on_notify: OnNotify, on_ready: OnReady) -> None:
        """LISTEN forever, reconnecting with backoff; channels added join the same connection."""
        n = 0
        while True:
            conn: psycopg.Connection[Row] | None = None
            try:
                conn = await trio.to_thread.run_sync(self._connect)
                done = 0
                while True:
                    names = list(channels.names)
                    for name in names[done:]:
                        listen = sql.SQL("LISTEN {}").format(sql.Identifier(name))
                        await trio.to_thread.run_sync(conn.execute, listen)
                    done = len(names)
                    on_ready(done)  # a notification read by that thread is looked for again
                    n = 0
                    with channels.until_grown(done):
                        while True:
                            for notify in conn.notifies(timeout=0):
                                on_notify(notify.channel, notify.payload)
                            await trio.lowlevel.wait_readable(conn.fileno())
            except (psycopg.Error, OSError) as exc:
                n += 1
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                on_ready(0)
                await backoff(n)
            finally:
                if conn is not None and not conn.closed:
                    conn.pgconn.finish()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        self._pool.close_all()
