"""asyncio and trioqueue: a client for asyncio apps, and asyncio code inside Trio handlers.

An asyncio app (FastAPI, Starlette, aiohttp...) pushes with ``open_client``::

    from trioqueue.asyncio import open_client

    async with open_client("postgresql://app@db/app", queue="email") as client:
        tid = await client.push({"to": "a@example.com"})
        print(await client.wait_result(tid))

A Trio worker's handler awaits asyncio code with ``run_asyncio`` or the
``asyncio_handler`` decorator (on trio-asyncio). See ``docs/clients.md``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from ._client._common import (
    POLL_MAX,
    POLL_MIN,
    Encoder,
    check_taken,
    final_result,
    no_task,
    retention_shown,
    rule_to_store,
    url_kind,
)
from ._client._in_trio import asyncio_handler, run_asyncio
from ._client._sqlite import SqliteStore, sqlite_options
from ._codec import Codec
from ._driver import StoredTask
from ._errors import PushError
from ._lifecycle import Retention
from ._registry import redact_url
from ._sink import IfExists
from ._task import Task, TaskId

__all__ = ["AsyncClient", "asyncio_handler", "open_client", "run_asyncio"]

T = TypeVar("T")
_IN_TX = "the task could not be inserted in the caller's transaction"


class AsyncClient:
    """An asyncio client of a SQLite or PostgreSQL store; make one with ``open_client``.

    PostgreSQL runs on psycopg's asyncio connections, SQLite on a few threads
    of the client's own (off the event loop).

    Cancellation: a push, ``push_bulk`` or ``cancel_task`` whose caller is
    cancelled runs to its end all the same (it is one statement or one
    transaction, stored entirely or not at all) and the cancellation is
    raised; the client's block waits for such calls before it closes.
    """

    def __init__(self, url: str, enc: Encoder, store: Any, executor: ThreadPoolExecutor | None):
        self.url = url
        self.kind = url_kind(url)
        self.queue = enc.queue
        self.codec = enc.codec
        self._enc = enc
        self._store = store
        self._executor = executor
        self._inflight: set[asyncio.Future[Any]] = set()

    # -- running calls --

    def _sqlite(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        # ``wrap_future``, not ``run_in_executor``: any loop takes it (trio-asyncio's
        # loop runs only its own executor).
        assert self._executor is not None
        return asyncio.wrap_future(self._executor.submit(fn, *args))

    async def _call(self, name: str, *args: Any) -> Any:
        if self._executor is not None:
            return await self._sqlite(getattr(self._store, name), *args)
        return await getattr(self._store, name)(*args)

    async def _write(self, name: str, *args: Any) -> Any:
        # Shielded: a cancelled caller never leaves a statement half-way on a
        # connection; the call ends and the cancellation is raised.
        fut: asyncio.Future[Any]
        if self._executor is not None:
            fut = self._sqlite(getattr(self._store, name), *args)
        else:
            fut = asyncio.ensure_future(getattr(self._store, name)(*args))
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return await asyncio.shield(fut)

    # -- pushing --

    async def push(
        self,
        args: Any,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
        if_exists: IfExists = "skip",
    ) -> TaskId:
        """Encode ``args`` and store it as a new task (see ``trioqueue.sync.Client.push``).

        Returns:
          The task's id.

        Raises:
          CodecError, DuplicateTask, PushError, TypeError, ValueError: as ``TaskSink.push``.
        """
        mode = self._enc.if_exists(if_exists)
        rec = self._enc.one(
            args, delay=delay, run_at=run_at, priority=priority,
            max_attempts=max_attempts, id=id, meta=meta,
        )  # fmt: skip
        await self._insert([rec], mode)
        return TaskId(rec.id)

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Encode every item and store them all in one statement (all or none).

        Returns:
          The ids, in order. Raises as ``push`` does.
        """
        records = self._enc.many(items)
        if records:
            await self._insert(records, "skip")
        return [TaskId(r.id) for r in records]

    async def _insert(self, records: list[StoredTask], if_exists: IfExists) -> None:
        n, held = await self._write("insert", records, if_exists)
        check_taken(records, n, held, if_exists)

    async def push_in(
        self,
        conn: Any,
        args: Any,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> TaskId:
        """Push a task in the caller's transaction on ``conn``: it exists iff that commits.

        Args:
          conn: A psycopg ``AsyncConnection`` or ``Connection`` to the client's
            database (the sync one is run in a thread), or the app's
            ``sqlite3.Connection`` to the client's file (run at once: it is
            the caller's, on the caller's thread).
          args: The handler's input; the other arguments are as in ``push``.

        Returns:
          The task's id. Raises as ``trioqueue.sync.Client.push_in`` does.
        """
        rec = self._enc.one(
            args, delay=delay, run_at=run_at, priority=priority,
            max_attempts=max_attempts, id=id, meta=meta,
        )  # fmt: skip
        if isinstance(self._store, SqliteStore):
            if not isinstance(conn, sqlite3.Connection):
                raise TypeError(f"a SQLite client takes a sqlite3.Connection, got {_kind(conn)}")
            try:
                self._store.insert_on(conn, rec)
            except sqlite3.Error as exc:
                raise PushError(_IN_TX) from exc
            return TaskId(rec.id)
        import psycopg

        try:
            if isinstance(conn, psycopg.AsyncConnection):
                await self._store.insert_on(conn, rec)
            elif isinstance(conn, psycopg.Connection):
                query, params = self._store.ops.insert([rec], "skip")
                await asyncio.to_thread(conn.execute, query, params)
            else:
                raise TypeError(
                    f"a PostgreSQL client takes a psycopg connection, got {_kind(conn)}"
                )
        except psycopg.Error as exc:
            raise PushError(_IN_TX) from exc
        return TaskId(rec.id)

    # -- following --

    async def get_task(self, id: str) -> Task[Any] | None:
        """Return the task with this id (args and result as plain data), or None."""
        rec = await self._call("get", str(id))
        return None if rec is None else self._enc.task(rec)

    async def wait_result(self, id: str, *, type: Any = None) -> Any:
        """Wait until task ``id`` is final and return its result.

        PostgreSQL: it LISTENs on the channel the workers notify of changes.
        SQLite: it reads the task every 5 ms at first, backing off to every
        250 ms while nothing changes. No timeout argument: wrap the call in
        ``asyncio.timeout``.

        Returns:
          The decoded result of a DONE task.

        Raises:
          TaskFailed, TaskCancelled, LookupError, CodecError: as ``Backend.wait_result``.
        """
        id = str(id)
        if self._executor is None:
            rec = await self._store.wait_final(id)
        else:
            rec = await self._poll(id)
        if rec is None:
            raise no_task(id)
        return final_result(self._enc, rec, type)

    async def _poll(self, id: str) -> StoredTask | None:
        pause, last = POLL_MIN, None
        while True:
            rec: StoredTask | None = await self._call("get", id)
            if rec is None or rec.status.is_final:
                return rec
            key = (rec.status, rec.attempts, rec.progress)
            pause = POLL_MIN if key != last else min(POLL_MAX, pause * 2)
            last = key
            await asyncio.sleep(pause)

    async def cancel_task(self, id: str) -> bool:
        """Cancel a task that is not final (see ``trioqueue.sync.Client.cancel_task``).

        Returns:
          Whether the task was cancelled or flagged (False: final or unknown).
        """
        return bool(await self._write("cancel", str(id)))

    async def set_retention(self, queue: str, retention: Retention | None) -> None:
        """Store ``queue``'s retention in the store (see ``trioqueue.sync.Client.set_retention``).

        Raises:
          TypeError, ValueError: for a wrong type, a negative period or an
            invalid queue name (nothing is stored).
          BackendError: storage failed.
        """
        name, rule = rule_to_store(queue, retention)
        await self._write("set_retention", name, rule)

    async def retention(self, queue: str | None = None) -> Retention | None:
        """Return ``queue``'s stored retention (see ``trioqueue.sync.Client.retention``)."""
        name = self.queue if queue is None else queue
        return retention_shown(name, await self._call("retentions", [name]))

    async def aclose(self) -> None:
        """Wait for the calls still running (cancelled ones included), then close."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True)
            self._store.close()
        else:
            await self._store.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {redact_url(self.url)!r} queue={self.queue!r} {self._store!r}>"


@asynccontextmanager
async def open_client(
    url: str,
    *,
    queue: str = "default",
    codec: Codec | None = None,
    schema: str = "trioqueue",
    migrate: bool = True,
    pool_size: int = 4,
    connect_timeout: float = 10.0,
    busy_timeout: float = 5.0,
) -> AsyncIterator[AsyncClient]:
    """Open an asyncio client of a SQLite or PostgreSQL store for the block.

    Args:
      url: ``sqlite:///path.db`` or ``postgresql://user@host/db`` (the URL a
        Trio worker opens). The other arguments are ``trioqueue.sync.Client``'s.

    Raises:
      BackendError: the store cannot be reached or its schema is unusable.
      ValueError: for a ``memory://`` or unknown URL, or a bad option.

    Resource handling:
      On exit, calls still running finish (a cancelled push included), then
      the connections (and SQLite's threads) close.
    """
    if pool_size < 1:
        raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
    kind = url_kind(url)
    enc = Encoder(queue=queue, codec=codec)
    executor: ThreadPoolExecutor | None = None
    store: Any
    if kind == "sqlite":
        path, busy, synchronous = sqlite_options(url, busy_timeout)
        store = await asyncio.to_thread(
            SqliteStore, path, busy_timeout=busy, synchronous=synchronous,
            migrate=migrate, pool_size=pool_size,
        )  # fmt: skip
        executor = ThreadPoolExecutor(pool_size, thread_name_prefix="trioqueue-client")
    else:
        from ._client._pg import prepare_schema
        from ._client._pg_async import AsyncPgStore

        await asyncio.to_thread(
            prepare_schema, url, schema, migrate=migrate, connect_timeout=connect_timeout
        )
        store = AsyncPgStore(
            url, schema=schema, pool_size=pool_size, connect_timeout=connect_timeout
        )
    client = AsyncClient(url, enc, store, executor)
    try:
        yield client
    finally:
        await asyncio.shield(client.aclose())


def _kind(conn: object) -> str:
    return f"{type(conn).__module__}.{type(conn).__qualname__}"
