"""``AsyncPgStore``: ``PgOps``'s statements on a small pool of psycopg asyncio connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg

from .._driver import RetentionRule, StoredTask
from .._errors import BackendError
from .._registry import redact_url
from .._sink import IfExists
from ..backends._pg_schema import _connect_error
from ._common import LISTEN_MAX, Held
from ._pg import ATTEMPTS, PgOps, Row, _error

__all__ = ["AsyncPgStore"]

T = TypeVar("T")


class AsyncPgStore:
    """asyncio access to trioqueue's tables in one PostgreSQL database (see ``PgStore``)."""

    def __init__(
        self, url: str, *, schema: str, pool_size: int = 4, connect_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.ops = PgOps(schema)
        self._timeout = max(1, round(connect_timeout))
        self._free: list[psycopg.AsyncConnection[Row]] = []
        self._slots = asyncio.Semaphore(pool_size)
        self._all: set[psycopg.AsyncConnection[Row]] = set()
        self._closed = False

    async def _connect(self) -> psycopg.AsyncConnection[Row]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=self._timeout
            )
        except psycopg.OperationalError as exc:
            raise BackendError(redact_url(str(_connect_error(self.url, exc)))) from exc
        self._all.add(conn)
        return conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        """Borrow a pooled connection (autocommit).

        One whose call failed or was cancelled is closed, never reused in an
        unknown state.
        """
        if self._closed:
            raise BackendError("the client is closed")
        async with self._slots:
            conn = self._free.pop() if self._free else await self._connect()
            ok = False
            try:
                yield conn
                ok = True
            finally:
                idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if ok and idle and not self._closed:
                    self._free.append(conn)
                else:
                    self._all.discard(conn)
                    await asyncio.shield(conn.close())

    async def call(
        self, what: str, fn: Callable[[psycopg.AsyncConnection[Row]], Awaitable[T]]
    ) -> T:
        """Run ``fn`` on a pooled connection, again on a fresh one if the connection was lost."""
        for attempt in range(ATTEMPTS):
            try:
                async with self.connection() as conn:
                    return await fn(conn)
            except psycopg.OperationalError as exc:
                if attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(0.05 * 4**attempt)
                    continue
                raise _error(what)(f"PostgreSQL: could not {what}: {exc}") from exc
            except psycopg.Error as exc:
                raise _error(what)(f"PostgreSQL: could not {what}: {exc}") from exc
        raise AssertionError("unreachable")

    async def fetch(self, what: str, query: tuple[Any, Any]) -> list[Row]:
        """Run one statement and return its rows."""

        async def run(conn: psycopg.AsyncConnection[Row]) -> list[Row]:
            cur = await conn.execute(query[0], query[1])
            return await cur.fetchall()

        return await self.call(what, run)

    # -- operations --

    async def insert(self, records: list[StoredTask], if_exists: IfExists) -> tuple[int, Held]:
        """Store ``records`` in one statement; return how many and the ids found taken."""
        rows = await self.fetch("push", self.ops.insert(records, if_exists))
        n = self.ops.stored(records, if_exists, rows)
        if n >= len(records):
            return n, {}
        return n, self.ops.held(await self.fetch("push", self.ops.queues_of(records)))

    async def insert_on(self, conn: psycopg.AsyncConnection[Any], record: StoredTask) -> None:
        """Insert ``record`` (and its NOTIFY) with the caller's connection, in its transaction."""
        query, params = self.ops.insert([record], "skip")
        await conn.execute(query, params)

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        return self.ops.record(await self.fetch("read a task", self.ops.get(id)))

    async def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task; flag a QUEUED or RUNNING one."""
        return bool((await self.fetch("cancel a task", self.ops.cancel(id)))[0][0])

    async def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule."""
        await self.fetch("store a queue's retention", self.ops.set_retention(queue, rule))

    async def retentions(self, queues: list[str]) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues``, by queue."""
        rows = await self.fetch("read a retention", self.ops.retentions(queues))
        return self.ops.rules(rows)

    async def wait_final(self, id: str) -> StoredTask | None:
        """Return task ``id`` once final (None: no such task), LISTENing for its changes."""

        async def run(conn: psycopg.AsyncConnection[Row]) -> StoredTask | None:
            await conn.execute(self.ops.listen)
            while True:
                query, params = self.ops.get(id)
                cur = await conn.execute(query, params)
                rec = self.ops.record(await cur.fetchall())
                if rec is None or rec.status.is_final:
                    await conn.execute("UNLISTEN *")
                    return rec
                until = time.monotonic() + LISTEN_MAX
                async for n in conn.notifies(timeout=LISTEN_MAX):
                    if self.ops.concerns(n.payload, id) or time.monotonic() >= until:
                        break

        return await self.call("wait for a task", run)

    async def aclose(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        conns, self._all = self._all, set()
        self._free.clear()
        for conn in conns:
            await conn.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncPgStore {redact_url(self.url)!r} {state} connections={len(self._all)}>"
