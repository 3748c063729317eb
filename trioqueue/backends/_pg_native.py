"""A Trio-native PostgreSQL connection: psycopg's libpq generators driven by Trio's socket waits.

psycopg 3 does its non-blocking work in generators (``psycopg.generators``,
``Cursor._execute_gen``) that yield "wait until the socket is readable or
writable" and resume with what became ready; its sync and asyncio APIs differ
only in the function that waits. ``wait`` and ``wait_conn`` are that function
for Trio, so a statement costs one ``trio.lowlevel.wait_readable`` in the
calling task: no thread, no second event loop.

``_pg_pool.NativeRunner`` runs statements on a small pool of such
connections (as prepared statements, ``_pg_prepared``) and keeps a LISTEN
connection alive.

psycopg internals used, hence the pinned psycopg versions: ``Cursor._execute_gen``,
the ``psycopg.generators`` functions, ``psycopg._conninfo_attempts``.
"""

from __future__ import annotations

import logging
import random
import select
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import generators, sql
from psycopg._conninfo_attempts import conninfo_attempts
from psycopg.abc import PQGen, PQGenConn
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.pq.abc import PGconn
from psycopg.rows import tuple_row
from psycopg.waiting import Ready, Wait

from .._nursery import open_nursery

__all__ = [
    "CANCEL_TIMEOUT",
    "Connection",
    "Params",
    "Query",
    "Row",
    "backoff",
    "connect",
    "execute",
    "fetch_on_callers",
    "reusable",
    "send_cancel",
    "setup_sql",
    "still_open",
    "wait",
    "wait_conn",
]

log = logging.getLogger("trioqueue.backends.postgres")

Row = tuple[Any, ...]
Query = str | sql.SQL | sql.Composed
Params = dict[str, Any] | Sequence[Any] | None
Connection = psycopg.Connection[Row]
RV = TypeVar("RV")

#: Longest wait for the server to take a cancel request (seconds).
CANCEL_TIMEOUT = 2.0


async def _ready(fileno: int, state: int) -> Ready:
    if state == Wait.R:
        await trio.lowlevel.wait_readable(fileno)
        return Ready.R
    if state == Wait.W:
        await trio.lowlevel.wait_writable(fileno)
        return Ready.W
    # RW: a send that filled the socket; reading meanwhile lets the server go on.
    ready = Ready.NONE
    async with open_nursery() as nursery:

        async def until(waiter: Callable[[int], Any], flag: Ready) -> None:
            nonlocal ready
            await waiter(fileno)
            ready = Ready(ready | flag)
            nursery.cancel_scope.cancel()

        nursery.start_soon(until, trio.lowlevel.wait_readable, Ready.R)
        nursery.start_soon(until, trio.lowlevel.wait_writable, Ready.W)
    return ready


async def wait(gen: PQGen[RV], fileno: int) -> RV:
    """Run a psycopg generator that works on socket ``fileno`` to its end; return its value.

    The Trio twin of ``psycopg.waiting.wait``: each state the generator yields
    becomes a wait on the socket in this task.
    """
    try:
        state = next(gen)
        while True:
            state = gen.send(await _ready(fileno, state))
    except StopIteration as stop:
        rv: RV = stop.value
        return rv


async def wait_conn(gen: PQGenConn[RV]) -> RV:
    """Run a psycopg generator that yields ``(socket, state)`` pairs (connecting, cancelling)."""
    try:
        fileno, state = next(gen)
        while True:
            fileno, state = gen.send(await _ready(fileno, state))
    except StopIteration as stop:
        rv: RV = stop.value
        return rv


async def connect(conninfo: str, *, seconds: float) -> Connection:
    """Open an autocommit connection, waiting on its socket in Trio.

    Host names are resolved (in a worker thread, as ``trio.socket.getaddrinfo``
    does) and their addresses tried in turn, as psycopg does.

    Args:
      conninfo: A libpq connection string or URL.
      seconds: How long connecting may take, all attempts together.

    Raises:
      psycopg.OperationalError: the server could not be reached or refused the
        connection; ``psycopg.errors.ConnectionTimeout`` after ``seconds``.
    """
    with trio.move_on_after(seconds):
        attempts = await trio.to_thread.run_sync(
            conninfo_attempts, conninfo_to_dict(conninfo), abandon_on_cancel=True
        )
        error: psycopg.Error | None = None
        for attempt in attempts:
            gen = generators.connect(make_conninfo("", **attempt))
            try:
                pgconn = await wait_conn(gen)
            except psycopg.Error as exc:
                log.debug("connection attempt failed: %s", exc)
                error = exc
                continue
            finally:
                gen.close()  # a cancelled attempt's libpq connection goes now
            conn = psycopg.Connection(pgconn)
            conn.autocommit = True  # idle: sets the flag without a round trip
            return conn
        assert error is not None  # conninfo_attempts raises when it finds none
        raise error
    raise psycopg.errors.ConnectionTimeout(f"connection timeout expired ({seconds}s)")


async def execute(conn: Connection, query: Query, params: Params) -> list[Row]:
    """Run one statement on ``conn`` and return its rows ([] if it returns none).

    Parameters, prepared statements and errors are psycopg's own (its cursor's
    generator); only the waits are Trio's.

    Raises:
      psycopg.Error: what the server or psycopg raised for the statement.
    """
    cur = conn.cursor()
    await wait(cur._execute_gen(query, params), conn.pgconn.socket)
    return cur.fetchall() if cur.description is not None else []


async def send_cancel(pgconn: PGconn, *, seconds: float = CANCEL_TIMEOUT) -> None:
    """Ask the server to cancel the statement running on ``pgconn``; best effort.

    Shielded, and bounded by ``seconds``: a server that does not answer is
    logged, not waited for. libpq 17 and later cancel on a non-blocking
    connection waited on here; older ones in a worker thread.
    """
    with trio.move_on_after(seconds, shield=True) as scope:
        try:
            if psycopg.capabilities.has_cancel_safe():
                cancel_conn = pgconn.cancel_conn()
                try:
                    cancel_conn.start()
                    await wait_conn(generators.cancel(cancel_conn))
                finally:
                    cancel_conn.finish()
            else:
                await trio.to_thread.run_sync(pgconn.get_cancel().cancel, abandon_on_cancel=True)
        except (psycopg.Error, OSError) as exc:
            log.warning("cancel request failed: %s", exc)
    if scope.cancelled_caught:
        log.warning("cancel request not taken within %ss", seconds)


def reusable(conn: Connection) -> bool:
    """Whether a connection can run the next statement: open, idle, no transaction."""
    pgconn = conn.pgconn
    return pgconn.status == ConnStatus.OK and pgconn.transaction_status == TransactionStatus.IDLE


def still_open(conn: Connection) -> bool:
    """Whether an idle pooled connection is usable, judged without sending anything.

    An idle autocommit connection gets nothing unprompted but the server's
    goodbye (an error such as ``admin_shutdown``, then end of file), which
    arrives when the server restarts or the backend is terminated. Reading
    what is there finds such a connection before a statement is lost on it.
    """
    if not reusable(conn):
        return False
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    try:
        for _ in range(4):
            if not poller.poll(0):
                break
            conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return reusable(conn)


def setup_sql(statement_timeout: float) -> sql.Composed:
    """Return the ``SET statement_timeout`` a new pooled connection runs first."""
    ms = max(0, round(statement_timeout * 1000))
    return sql.SQL("SET statement_timeout = {}").format(sql.Literal(ms))


async def backoff(n: int) -> None:
    """Sleep before reconnection attempt ``n``: capped exponential, with jitter."""
    await trio.sleep(min(5.0, 0.05 * 2 ** min(n, 10)) * (0.5 + random.random() / 2))


async def fetch_on_callers(
    conn: object, query: Query, params: Params, loop: Any | None
) -> list[Row]:
    """Run one statement on the caller's psycopg connection, in the caller's transaction.

    Tuple rows whatever the connection's row factory. A sync ``Connection`` runs
    in a worker thread; an ``AsyncConnection`` on the trio-asyncio loop current
    in this task, else on ``loop``.

    Raises:
      TypeError: for anything else, or an ``AsyncConnection`` with no loop to run on.
    """
    if isinstance(conn, psycopg.AsyncConnection):
        import trio_asyncio

        current = trio_asyncio.current_loop.get()
        if current is not None:
            loop = current
        if loop is None:
            raise TypeError(
                "an AsyncConnection needs a running trio-asyncio loop "
                "(or open the backend with runner='asyncio')"
            )
        aconn: psycopg.AsyncConnection[Any] = conn

        async def run_async() -> list[Row]:
            async with aconn.cursor(row_factory=tuple_row) as cur:
                await cur.execute(query, params)
                return list(await cur.fetchall()) if cur.description is not None else []

        rows: list[Row] = await trio_asyncio.aio_as_trio(run_async, loop=loop)()
        return rows
    if isinstance(conn, psycopg.Connection):
        sconn: psycopg.Connection[Any] = conn

        def run() -> list[Row]:
            with sconn.cursor(row_factory=tuple_row) as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description is not None else []

        return await trio.to_thread.run_sync(run)
    raise TypeError(f"expected a psycopg connection, got {type(conn).__name__}")
