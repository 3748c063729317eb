"""The PostgreSQL backend: claims with ``FOR UPDATE SKIP LOCKED``, wakes with LISTEN/NOTIFY.

Each driver call is one SQL statement (its own transaction) over one crossing
from Trio into psycopg (a statement runner, ``_pg_runner.py``); see ``docs/postgres.md``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
import trio

from .._backend import Backend
from .._codec import Codec
from .._driver import Outcome, StoredTask
from .._durations import seconds
from .._errors import PushError
from .._nursery import open_nursery
from .._registry import BackendSpec
from .._sink import check_queue_name
from .._task import Status, TaskId
from ._pg_native import Row
from ._pg_runner import RUNNERS, Runner, open_runner
from ._pg_schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._pg_schema import Statements, check_identifier, reach, row_to_task

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "PostgresDriver", "migrate"]


class PostgresDriver:
    """A storage driver on PostgreSQL: one statement per batch operation.

    Made by ``PostgresBackend.open``; it needs a ``Runner`` and, when
    ``listen`` is true, its ``listener`` running in a nursery.

    Args:
      runner: Runs the statements.
      schema: The schema holding the tables (validated identifier).
      clock: A function returning POSIX seconds (default ``time.time``).
      listen: Wait for NOTIFY (true) or poll (false).
      shield_seconds: Longest time a mutating call finishes after a cancellation.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        schema: str = "trioqueue",
        clock: Callable[[], float] | None = None,
        listen: bool = True,
        shield_seconds: float = 30.0,
    ) -> None:
        self._runner = runner
        self.schema = check_identifier(schema)
        self._sql = Statements(schema)
        self._clock = clock if clock is not None else time.time
        self.listening = listen
        self._shield_seconds = shield_seconds
        self._wake: dict[str, trio.Event] = {}
        #: NOTIFY messages received since open (for statistics and tests).
        self.notifications = 0

    def now(self) -> float:
        """Return the clock given at construction (default: ``time.time()``)."""
        return self._clock()

    # -- plumbing --

    async def _fetch(self, query: Any, params: dict[str, Any], *, shield: bool) -> list[Row]:
        if not shield:
            return await self._runner.fetch(query, params)
        # A statement that changes state runs to its end even when the caller is
        # cancelled (bounded): its effect is then known to the caller instead of
        # being committed behind its back.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._shield_seconds
            rows = await self._runner.fetch(query, params)
        if scope.cancelled_caught:
            raise TimeoutError(f"statement did not finish within {self._shield_seconds}s")
        return rows

    def _event(self, queue: str) -> trio.Event:
        ev = self._wake.get(queue)
        if ev is None:
            ev = self._wake[queue] = trio.Event()
        return ev

    def _notified(self, queue: str) -> None:
        self.notifications += 1
        ev = self._wake.get(queue)
        if ev is not None:
            ev.set()

    def _wake_all(self) -> None:
        for ev in self._wake.values():
            ev.set()

    async def listener(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """LISTEN for wake-ups until cancelled; ``started()`` after the first attempt."""
        started = False

        def ready() -> None:
            nonlocal started
            self._wake_all()
            if not started:
                started = True
                task_status.started()

        await self._runner.listen(self._sql.channel, self._notified, ready)

    # -- the Driver protocol --

    async def insert(self, tasks: Sequence[StoredTask]) -> int:
        """Store new tasks (one statement; existing ids skipped) and NOTIFY their queues."""
        if not tasks:
            return 0
        rows = await self._fetch(self._sql.insert, self._sql.insert_params(tasks), shield=True)
        for q in {t.queue for t in tasks}:
            self._notified(q)  # wake local waiters without waiting for the round trip
        return int(rows[0][0])

    async def insert_on(
        self,
        conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any],
        tasks: Sequence[StoredTask],
    ) -> int:
        """Store new tasks with the caller's connection, inside the caller's transaction.

        The statement of ``insert``: the tasks (and their queues' NOTIFY)
        appear when the caller commits. ``conn`` is a sync ``Connection`` (run
        in a worker thread) or an ``AsyncConnection`` (run on this task's
        trio-asyncio loop, else the runner's). Returns how many were stored.

        Raises:
          TypeError: if ``conn`` is not a psycopg connection, or is an
            ``AsyncConnection`` with no trio-asyncio loop to run on.
          psycopg.Error: if the statement failed (not translated).
        """
        rows = await self._runner.fetch_on(conn, self._sql.insert, self._sql.insert_params(tasks))
        return int(rows[0][0])

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks (``FOR UPDATE SKIP LOCKED``) in order."""
        self._event(queue)
        if limit <= 0:
            return []
        now = self.now()
        params = {
            "queue": queue,
            "now": now,
            "limit": limit,
            "token": token,
            "expires": now + lease_seconds,
        }
        recs = [row_to_task(r) for r in await self._fetch(self._sql.claim, params, shield=True)]
        recs.sort(key=lambda t: (-t.priority, t.run_at, t.id))
        return recs

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING."""
        if ids:
            await self._fetch(self._sql.start, {"ids": list(ids), "token": token}, shield=True)

    async def extend(self, ids: Sequence[str], token: str, lease_seconds: float) -> list[str]:
        """Extend the leases still held; return their ids."""
        if not ids:
            return []
        params = {"ids": list(ids), "token": token, "expires": self.now() + lease_seconds}
        rows = await self._fetch(self._sql.extend, params, shield=True)
        kept = {r[0] for r in rows}
        return [i for i in ids if i in kept]

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Apply outcomes whose lease is still held (compare-and-set), one statement."""
        if not outcomes:
            return []
        params = {
            "ids": [o.id for o in outcomes],
            "statuses": [str(o.status) for o in outcomes],
            "results": [o.result for o in outcomes],
            "errors": [o.error for o in outcomes],
            "delays": [float(o.delay) for o in outcomes],
            "token": token,
            "now": self.now(),
            "channel": self._sql.channel,
        }
        rows = await self._fetch(self._sql.settle, params, shield=True)
        done = set(rows[0][0] or ())
        return [o.id for o in outcomes if o.id in done]

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back as PENDING, uncounting their attempt."""
        if not ids:
            return 0
        params = {"ids": list(ids), "token": token, "channel": self._sql.channel}
        rows = await self._fetch(self._sql.release, params, shield=True)
        return int(rows[0][0])

    async def rescue(self, queue: str | None) -> int:
        """Recover expired leases of ``queue`` (or every queue): KILLED or FAILED now."""
        params = {"queue": queue, "now": self.now(), "channel": self._sql.channel}
        rows = await self._fetch(self._sql.rescue, params, shield=True)
        return int(rows[0][0])

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest run_at of a PENDING or FAILED task of ``queue``."""
        rows = await self._fetch(self._sql.next_run_at, {"queue": queue}, shield=False)
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Wait for a NOTIFY on ``queue`` (or, polling, just ``max_wait`` seconds)."""
        ev = self._event(queue)
        with trio.move_on_after(max_wait):
            await ev.wait()
        if ev.is_set() and self._wake.get(queue) is ev:
            self._wake[queue] = trio.Event()

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Count tasks per queue and status."""
        out: dict[str, dict[Status, int]] = {}
        for q, st, n in await self._fetch(self._sql.counts, {"queue": queue}, shield=False):
            out.setdefault(q, {})[Status(st)] = int(n)
        return out

    async def list_tasks(
        self, *, queue: str | None, status: Status | None, limit: int, offset: int
    ) -> list[StoredTask]:
        """List tasks, newest id first, paged."""
        params = {
            "queue": queue,
            "status": None if status is None else str(status),
            "limit": max(0, limit),
            "offset": max(0, offset),
        }
        return [
            row_to_task(r) for r in await self._fetch(self._sql.list_tasks, params, shield=False)
        ]

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        rows = await self._fetch(self._sql.get, {"id": id}, shield=False)
        return row_to_task(rows[0]) if rows else None

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed."""
        params = {"id": id, "now": self.now(), "channel": self._sql.channel}
        rows = await self._fetch(self._sql.retry, params, shield=True)
        return bool(rows[0][0])

    async def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task."""
        rows = await self._fetch(self._sql.cancel, {"id": id, "now": self.now()}, shield=True)
        return bool(rows)

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``."""
        rows = await self._fetch(self._sql.purge, {"before": older_than}, shield=True)
        return int(rows[0][0])

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._runner.aclose()

    def __repr__(self) -> str:
        mode = "listen" if self.listening else "poll"
        return f"<PostgresDriver schema={self.schema!r} {mode} notifications={self.notifications}>"


async def migrate(url: str, *, schema: str = "trioqueue", connect_timeout: float = 10.0) -> int:
    """Create or upgrade trioqueue's tables in ``schema`` and return the schema version.

    Idempotent, and safe to run from several processes at once (an advisory
    lock serializes them).

    Args:
      url: A ``postgresql://`` URL or libpq connection string.
      schema: The schema to hold the tables (letters, digits and ``_``).
      connect_timeout: Seconds to wait for the server.

    Returns:
      The schema version now in place.

    Raises:
      ValueError: if ``schema`` is not a plain identifier.
      BackendError: if the server cannot be reached or the migration failed.
    """
    check_identifier(schema)
    return await reach(url, schema, migrate=True, connect_timeout=connect_timeout)


class PostgresBackend(Backend):
    """The PostgreSQL backend (``postgresql://``): durable, shared by many processes.

    Example::

        async with PostgresBackend.open("postgresql://app@db/app", queue="email") as b:
            await b.push({"to": "a@example.com"})

    See ``docs/postgres.md`` for the schema, claiming and wake-ups.
    """

    driver: PostgresDriver

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        queue: str = "default",
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        schema: str = "trioqueue",
        listen: bool = True,
        statement_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        pool_size: int = 4,
        runner: str = "native",
        **options: Any,
    ) -> AsyncIterator[PostgresBackend]:
        """Connect, migrate the schema, LISTEN, and yield the backend for the block.

        Args:
          url: ``postgresql://user:password@host:port/dbname`` (or ``postgres://``,
            or a libpq key=value string).
          queue: The queue pushed to and claimed from (default ``"default"``).
          codec: The codec (default ``JsonCodec()``).
          clock: A function returning POSIX seconds (tests move time by hand).
          migrate: Apply missing migrations on open (default true).
          schema: The schema holding trioqueue's tables (default ``"trioqueue"``).
          listen: Wake idle workers with LISTEN/NOTIFY (default); false polls
            every ``poll_interval`` (for poolers without LISTEN).
          statement_timeout: Seconds after which the server cancels a statement.
          connect_timeout: Seconds to wait for a connection.
          pool_size: Connections the backend uses at most for statements.
          runner: How statements run: ``"native"`` (the default: psycopg's
            libpq connection driven from Trio itself), ``"asyncio"`` (psycopg
            async on trio-asyncio) or ``"thread"`` (sync psycopg in worker threads).
          **options: The options of the shared bridge, ``Backend``
            (``push_buffer``, ``insert_batch``).

        Raises:
          BackendError: if the server cannot be reached or the migration failed.
          ValueError: for an invalid ``schema``, ``runner`` or timeout.

        Resource handling:
          Connections (a small pool plus one LISTEN connection) and, for the
          asyncio runner, a trio-asyncio loop (unless one is already running
          in this task) live as long as the block.
        """
        check_identifier(schema)
        check_queue_name(queue)
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
        statement_timeout = seconds("statement_timeout", statement_timeout, positive=True)
        connect_timeout = seconds("connect_timeout", connect_timeout, positive=True)
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        await reach(url, schema, migrate=migrate, connect_timeout=connect_timeout)
        async with open_runner(
            runner,
            url,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
        ) as r:
            driver = PostgresDriver(
                r,
                schema=schema,
                clock=clock,
                listen=listen,
                shield_seconds=statement_timeout + connect_timeout,
            )
            backend = cls(driver, queue=queue, codec=codec, transient=BACKEND.transient, **options)
            async with open_nursery() as nursery:
                if listen:
                    await nursery.start(driver.listener)
                try:
                    async with backend.running():
                        yield backend
                finally:
                    nursery.cancel_scope.cancel()

    async def push_in(
        self,
        conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any],
        args: Any,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> TaskId:
        """Push a task inside the caller's transaction on ``conn``: it exists iff that commits.

        The task is inserted (and its wake-up NOTIFY sent) with ``conn``, so it
        is visible to workers only once the caller's transaction commits, and
        vanishes if it rolls back. The connection must reach the same database.

        Args:
          conn: A psycopg ``AsyncConnection`` (run on a trio-asyncio loop: the
            one current in this task, else the backend's) or a sync
            ``Connection`` (run in a worker thread).
          args: The handler's input; the other arguments are as in ``push``.

        Returns:
          The task's id (an existing id stores nothing new).

        Raises:
          CodecError, TypeError, ValueError: as ``push``.
          PushError: if the statement failed (psycopg's error is the cause).
        """
        rec = self._record(
            args,
            now=self._now(),
            delay=delay,
            run_at=run_at,
            priority=priority,
            max_attempts=max_attempts,
            id=id,
            meta=meta,
        )
        try:
            await self.driver.insert_on(conn, [rec])
        except psycopg.Error as exc:
            raise PushError("the task could not be inserted in the caller's transaction") from exc
        return TaskId(rec.id)


#: The backend table's row for ``postgresql://`` (and ``postgres://``): lost or
#: refused connections, server shutdowns, statement timeouts, serialization
#: failures and deadlocks (``OperationalError`` and its subclasses), broken
#: sockets and a statement that never came back (``OSError``) may pass.
BACKEND = BackendSpec(
    name="postgresql",
    schemes=("postgresql", "postgres"),
    open=PostgresBackend.open,
    example="postgresql://user@host/db",
    transient=(psycopg.OperationalError, psycopg.InterfaceError, OSError),
    migrate=migrate,
    schema_version=SCHEMA_VERSION,
    options=frozenset({"schema"}),
)
