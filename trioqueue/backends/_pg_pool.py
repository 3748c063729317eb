"""``NativeRunner``: the driver's statements on a small pool of Trio-native connections.

Each pooled connection is a ``PreparedConnection`` (``_pg_prepared``): the
driver's statements run as prepared statements, with no cursor. LISTEN runs
on one more connection of its own. See ``_pg_native`` for the connection itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import psycopg
import trio
from psycopg import generators, sql
from psycopg.pq import TransactionStatus

from ._pg_listen import Channels, OnNotify, OnReady
from ._pg_native import (
    CANCEL_TIMEOUT,
    Params,
    Query,
    Row,
    backoff,
    connect,
    execute,
    fetch_on_callers,
    reusable,
    send_cancel,
    setup_sql,
    still_open,
    wait,
)
from ._pg_prepared import PreparedConnection

__all__ = ["NativeRunner"]


def _listen_sql(channel: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


T = TypeVar("T")

log = logging.getLogger("trioqueue.backends.postgres")


class NativeRunner:
    """Statements on a small pool of Trio-native connections; LISTEN on one more.

    Example::

        runner = NativeRunner(url, pool_size=4, statement_timeout=30, connect_timeout=10)
        try:
            rows = await runner.fetch("SELECT %(n)s::int + 1", {"n": 41})  # [(42,)]
        finally:
            await runner.aclose()

    A statement runs durably (``synchronous_commit`` on: its commit is on the
    server's disk before it returns) unless the caller says ``durable=False``;
    idle connections are kept apart by that setting, so switching one over (a
    ``SET``, one more round trip) happens only when the mix of statements changes.

    Args:
      url: The libpq connection string or URL.
      pool_size: Most connections open at once for statements (made lazily).
      statement_timeout: Seconds before the server cancels a statement.
      connect_timeout: Seconds to wait for a connection.

    Error handling:
      A statement's error is psycopg's; the connection stays pooled if it is
      still idle and open. A connection lost mid-statement raises
      ``psycopg.OperationalError`` (or a subclass) and is dropped; one that
      the server closed while it sat idle is found before use and replaced,
      without an error. A cancelled statement gets a cancel request sent to
      the server and its connection is closed: it never returns to the pool.

    Resource handling:
      Connections open on demand, up to ``pool_size``; ``aclose`` closes the
      idle ones at once and the busy ones when their statement ends.
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
        self._pool_size = pool_size
        self._slots = trio.Semaphore(pool_size)
        # Last in, first out: hot connections stay hot.
        self._idle: dict[bool, list[PreparedConnection]] = {True: [], False: []}
        self._busy: set[PreparedConnection] = set()
        self._setup = setup_sql(statement_timeout)
        self._connect_timeout = connect_timeout
        self._closed = False

    async def _open(self) -> PreparedConnection:
        conn = await connect(self._url, seconds=self._connect_timeout)
        try:
            await execute(conn, self._setup, None)
        except BaseException:
            conn.close()
            raise
        return PreparedConnection(conn)

    async def _take(self, durable: bool) -> PreparedConnection:
        if self._closed:
            raise trio.ClosedResourceError("the runner is closed")
        for idle in (self._idle[durable], self._idle[not durable]):
            while idle:
                pc = idle.pop()
                if still_open(pc.conn):
                    self._busy.add(pc)
                    return pc
                log.info("pooled connection closed by the server; replacing it")
                pc.close()
        pc = await self._open()
        self._busy.add(pc)
        return pc

    def _give(self, pc: PreparedConnection) -> None:
        self._busy.discard(pc)
        if not self._closed and reusable(pc.conn):
            self._idle[pc.durable].append(pc)
        else:
            pc.close()

    async def _discard(self, pc: PreparedConnection) -> None:
        self._busy.discard(pc)
        pgconn = pc.conn.pgconn
        if pgconn.transaction_status == TransactionStatus.ACTIVE:
            await send_cancel(pgconn, seconds=min(CANCEL_TIMEOUT, self._connect_timeout))
        pc.close()

    async def _with(self, durable: bool, fn: Callable[[PreparedConnection], Awaitable[T]]) -> T:
        # The statement waits on its socket (a checkpoint) anyway: take a free
        # slot without the extra trip through the scheduler that ``acquire`` makes.
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            pc = await self._take(durable)
            try:
                out = await fn(pc)
            except Exception:
                self._give(pc)  # kept only if still idle and open
                raise
            except BaseException:  # cancelled mid-statement: its state is unknown
                await self._discard(pc)
                raise
            self._give(pc)
            return out
        finally:
            self._slots.release()

    async def fetch(self, query: Query, params: Params, *, durable: bool = True) -> list[Row]:
        """Run one statement (autocommit) on a pooled connection and return its rows.

        Args:
          query: The statement.
          params: Its parameters.
          durable: Whether it returns only once its commit is on disk (the
            default); false lets a server crash lose it (``synchronous_commit = off``).

        Raises:
          psycopg.Error: the statement failed, or the connection did
            (``psycopg.OperationalError``; the next call opens a new one).
          trio.ClosedResourceError: after ``aclose``.
        """

        async def run(pc: PreparedConnection) -> list[Row]:
            if pc.durable is not durable:
                await pc.set_durable(durable)
            return await pc.execute(query, params)

        return await self._with(durable, run)

    async def copy_in(self, copy: str, data: Iterable[bytes], after: str) -> None:
        """COPY ``rows`` in, run ``after`` and commit, in one durable transaction.

        See ``PreparedConnection.copy_in``; errors and cancellation as in ``fetch``.
        """
        await self._with(True, lambda pc: pc.copy_in(copy, data, after))

    async def fetch_on(self, conn: object, query: Query, params: Params) -> list[Row]:
        """Run one statement on the caller's psycopg connection, as ``ThreadRunner`` does."""
        return await fetch_on_callers(conn, query, params, None)

    async def listen(self, channels: Channels, on_notify: OnNotify, on_ready: OnReady) -> None:
        """LISTEN on ``channels`` on a connection of its own; ``on_notify(channel, payload)``.

        Runs until cancelled. Channels added meanwhile are LISTENed on the
        same connection. ``on_ready(n)`` is called once the first ``n``
        channels are listened to (after each connection and each channel
        added) and ``on_ready(0)`` after each loss (notifications may have
        been missed); reconnects with backoff.
        """
        failures = 0
        while True:
            try:
                conn = await connect(self._url, seconds=self._connect_timeout)
                try:
                    conn.add_notify_handler(lambda n: on_notify(n.channel, n.payload))
                    fileno = conn.pgconn.socket
                    done = 0
                    while True:
                        names = list(channels.names)
                        for name in names[done:]:
                            await execute(conn, _listen_sql(name), None)
                        done = len(names)
                        on_ready(done)
                        failures = 0
                        with channels.until_grown(done):
                            while True:  # each notification reaches the handler above
                                await wait(generators.notifies(conn.pgconn), fileno)
                finally:
                    conn.close()
            except (psycopg.Error, OSError) as exc:
                failures += 1
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                on_ready(0)
                await backoff(failures)

    async def aclose(self) -> None:
        """Close the idle connections now, the busy ones when their statement ends."""
        self._closed = True
        for idle in self._idle.values():
            for pc in idle:
                pc.close()
            idle.clear()
        await trio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<NativeRunner {state} idle={sum(map(len, self._idle.values()))} "
            f"busy={len(self._busy)} "
            f"pool_size={self._pool_size}>"
        )
