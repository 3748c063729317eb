"""How the PostgreSQL driver runs psycopg from Trio: interchangeable statement runners.

A runner runs one statement on a pooled connection (``fetch``) or on the
caller's own connection (``fetch_on``), copies rows in (``copy_in``), and
keeps a LISTEN connection alive (``listen``). Each call crosses from Trio
once, whatever the batch size.

- ``NativeRunner`` (``_pg_pool``, the default): psycopg's libpq connection
  driven from Trio itself, statements prepared once per connection.
- ``AsyncioRunner`` and ``ThreadRunner`` (``_pg_psycopg``): psycopg's
  ``AsyncConnection`` on a trio-asyncio loop, and its sync ``Connection`` in
  worker threads.

A connection that failed, or whose call was interrupted, is closed and
replaced on the next call: that is how the driver reconnects after a server
restart or ``pg_terminate_backend``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol

from ._pg_listen import Channels, OnNotify, OnReady
from ._pg_native import (
    Params,
    Query,
    Row,
)
from ._pg_pool import NativeRunner
from ._pg_psycopg import AsyncioRunner as AsyncioRunner
from ._pg_psycopg import ThreadRunner as ThreadRunner

__all__ = ["RUNNERS", "AsyncioRunner", "Runner", "ThreadRunner", "open_runner"]

log = logging.getLogger("trioqueue.backends.postgres")


#: The names ``PostgresBackend.open`` accepts for ``runner=``.
RUNNERS = ("native", "asyncio", "thread")


class Runner(Protocol):
    """Runs statements and a LISTEN loop for the driver."""

    async def fetch(self, query: Query, params: Params, *, durable: bool = True) -> list[Row]:
        """Run one statement (autocommit) and return its rows ([] if it has none).

        ``durable=False`` allows the commit to return before it is on the
        server's disk (a runner may ignore it and commit durably anyway).
        """
        ...

    async def copy_in(self, copy: str, data: Iterable[bytes], after: str) -> None:
        """In one durable transaction: ``COPY ... FROM STDIN`` the ``data``, run ``after``.

        ``after`` is one or more statements without parameters (the wake-up
        NOTIFYs). Nothing is committed if any part fails.
        """
        ...

    async def fetch_on(self, conn: object, query: Query, params: Params) -> list[Row]:
        """Run one statement on the caller's psycopg connection, in its transaction.

        A sync ``Connection`` runs in a worker thread; an ``AsyncConnection``
        on the trio-asyncio loop current in this task, else the runner's own.

        Raises:
          TypeError: if ``conn`` is not a psycopg connection, or is an
            ``AsyncConnection`` with no trio-asyncio loop to run on.
        """
        ...

    async def listen(self, channels: Channels, on_notify: OnNotify, on_ready: OnReady) -> None:
        """LISTEN on ``channels`` and call ``on_notify(channel, payload)`` until cancelled.

        Channels added to ``channels`` meanwhile are listened to as well.
        ``on_ready(n)`` is called once the first ``n`` channels are listened
        to (after each connection and each channel added), ``on_ready(0)``
        after each loss: notifications may have been missed. Reconnects with backoff.
        """
        ...

    async def aclose(self) -> None:
        """Close every pooled connection."""
        ...


@asynccontextmanager
async def open_runner(
    kind: str,
    url: str,
    *,
    pool_size: int,
    statement_timeout: float,
    connect_timeout: float,
) -> AsyncIterator[Runner]:
    """Yield a runner of ``kind`` (one of ``RUNNERS``) for the block.

    Raises:
      ValueError: for another ``kind``.

    Resource handling:
      The asyncio runner uses the trio-asyncio loop already running in this
      task, else one opened for the block. Connections open lazily; the
      driver's ``aclose`` closes them.
    """
    if kind not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {kind!r}")
    if kind == "native":
        yield NativeRunner(
            url,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
        )
        return
    if kind == "thread":
        yield ThreadRunner(
            url,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
        )
        return
    import trio_asyncio

    async with AsyncExitStack() as stack:
        loop = trio_asyncio.current_loop.get()
        if loop is None:
            loop = await stack.enter_async_context(trio_asyncio.open_loop())
        yield AsyncioRunner(
            url,
            loop=loop,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
        )
