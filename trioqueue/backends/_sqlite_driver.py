"""``SqliteDriver``: the driver protocol on one SQLite file, shared by several processes.

One connection per driver. Short statements run on the Trio thread (never
waiting for a lock: ``busy_timeout`` is 0 there); large inserts, waits for
another process's write lock and WAL checkpoints run on the driver's own
thread (``_sqlite_thread``). Writes are ``BEGIN IMMEDIATE`` transactions, so
two processes never claim the same task; pushes are synced to disk before
they are acknowledged. An idle worker sleeps until inotify reports a write to
the WAL file (``_sqlite_wake``), else polls. Inspection and administration
are in ``_sqlite_admin``, the statements in ``_sqlite_statements``;
``sqlite.py`` wraps the driver in the public backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, TypeVar

import msgspec

from .._driver import Extended, Outcome, StoredTask
from .._durations import seconds
from .._task import Status
from . import _sqlite_schema as schema
from . import _sqlite_statements as sql
from ._columns import status_of
from ._sqlite_admin import SqliteAdministration
from ._sqlite_flows import SqliteFlows
from ._sqlite_schedules import SqliteSchedules
from ._sqlite_thread import DIRECT_ROWS, Connection
from ._sqlite_wake import FileWatch, Waker

__all__ = ["SqliteDriver"]

log = logging.getLogger("trioqueue.backends.sqlite")

T = TypeVar("T")

#: Outcomes that schedule the task again (its queue's claimers are woken).
_RESCHEDULED = (Status.FAILED, Status.PENDING)
#: Every this many write transactions, one runs on the connection thread with
#: SQLite's automatic WAL checkpoint enabled (off on the Trio thread).
CHECKPOINT_EVERY = 64


class SqliteDriver(SqliteFlows, SqliteAdministration, SqliteSchedules):
    """A storage driver on one SQLite file, safe to share between processes.

    Make one with ``await SqliteDriver.connect(path)`` and close it with
    ``aclose()`` (``SqliteBackend.open`` does both). The driver's one
    connection runs one call at a time: short ones on the Trio thread, with
    ``busy_timeout`` 0 so they never wait for another connection's lock;
    large ones, and any that found the lock taken, on the driver's connection
    thread with the configured ``busy_timeout``. Writes are ``BEGIN IMMEDIATE``
    transactions, so claims by several processes never overlap.

    Args:
      db: The open connection (``Connection.open``); the driver closes it.
      clock: A function returning POSIX seconds (default ``time.time``).
      synchronous: ``"off"``, ``"normal"`` or ``"full"`` (see ``docs/sqlite.md``).
      poll_min, poll_max: The first and the longest pause of ``wait_for_tasks``'s
        polling (after a write reported by inotify, or always without it).
      watch: What reports writes to the file (default: None, polling only).

    Attributes:
      db: The connection, with counts of the calls run on each thread.
    """

    def __init__(
        self,
        db: Connection,
        *,
        clock: Callable[[], float] | None = None,
        synchronous: str = "normal",
        poll_min: float = 0.001,
        poll_max: float = 0.1,
        watch: FileWatch | None = None,
    ) -> None:
        self.db = db
        self.path = db.path
        self._clock = clock if clock is not None else time.time
        self._synchronous = synchronous
        self._waker = Waker(watch, poll_min=poll_min, poll_max=poll_max)
        self._writes = 0
        self._seen: dict[str, int] = {}  # data_version read before the last claim, per queue
        self._init_administration()

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        busy_timeout: float = 5.0,
        synchronous: str = "normal",
        poll_min: float = 0.001,
        poll_max: float = 0.1,
        watch: bool = True,
    ) -> SqliteDriver:
        """Open the database file at ``path``, set it up and bring its schema up to date.

        Args:
          path: A filesystem path (or ``":memory:"``).
          clock: A function returning POSIX seconds (default ``time.time``).
          migrate: Apply missing schema migrations (else an old schema is an error).
          busy_timeout: Seconds a write waits for another connection's lock.
          synchronous: ``"off"``, ``"normal"`` (default) or ``"full"``.
          poll_min, poll_max: The first and the longest pause (seconds) of
            ``wait_for_tasks``'s polling for commits by other connections.
          watch: Sleep on inotify (Linux) between commits by other connections
            instead of polling; False polls always.

        Returns:
          The driver; the caller owns it and must ``aclose()`` it.

        Raises:
          BackendError: if the file cannot be opened, is not a database, has a
            schema newer than this code (or older, with ``migrate=False``).
        """
        if synchronous not in schema.SYNCHRONOUS_MODES:
            raise ValueError(
                f"synchronous must be one of {schema.SYNCHRONOUS_MODES}, got {synchronous!r}"
            )
        busy_timeout = seconds("busy_timeout", busy_timeout)
        poll_min = seconds("poll_min", poll_min, positive=True)
        poll_max = seconds("poll_max", poll_max, positive=True)
        if not poll_min <= poll_max:
            raise ValueError(f"need 0 < poll_min <= poll_max, got {poll_min!r}, {poll_max!r}")
        db, watched = await Connection.open(
            path, busy_timeout=busy_timeout, synchronous=synchronous, migrate=migrate
        )
        return cls(
            db,
            clock=clock,
            synchronous=synchronous,
            poll_min=poll_min,
            poll_max=poll_max,
            watch=FileWatch.open(watched) if watch and watched else None,
        )

    def now(self) -> float:
        """Return the injected clock, or ``time.time()``."""
        return self._clock()

    @property
    def watching(self) -> bool:
        """Whether an idle ``wait_for_tasks`` sleeps on inotify rather than polling."""
        return self._waker.watch is not None and self._waker.watch.alive

    # -- plumbing --

    def _write(
        self, conn: schema.Conn, fn: Callable[..., T], *args: Any, durable: bool = False
    ) -> T:
        # One BEGIN IMMEDIATE transaction around fn.
        with schema.immediate(conn, full_sync=durable and self._synchronous == "normal"):
            return fn(conn, *args)

    async def _tx(
        self, fn: Callable[..., T], *args: Any, durable: bool = False, rows: int = 0
    ) -> T:
        def run(conn: schema.Conn) -> T:
            return self._write(conn, fn, *args, durable=durable)

        self._writes += 1
        offload = rows > DIRECT_ROWS or self._writes % CHECKPOINT_EVERY == 0
        return await self.db.call(run, offload=offload)

    # -- the Driver protocol --

    async def insert(self, tasks: Sequence[StoredTask]) -> int:
        """Store new tasks (``INSERT OR IGNORE``), synced to disk before returning."""
        if not tasks:
            return 0

        def run(conn: schema.Conn) -> int:
            return sql.insert_tasks(conn, tasks)

        n = await self._tx(run, durable=True, rows=len(tasks))
        self._waker.wake(t.queue for t in tasks)
        return n

    async def replace(self, tasks: Sequence[StoredTask]) -> int:
        """Store tasks, replacing stored final ones of the same id, synced to disk.

        The final tasks among the ids are deleted and the new ones inserted
        (``INSERT OR IGNORE``: a task not final is kept) in one transaction.
        """
        if not tasks:
            return 0
        arg = sql.ids_json(t.id for t in tasks)

        def run(conn: schema.Conn) -> int:
            conn.execute(sql.DELETE_FINISHED, (arg,))
            return sql.insert_tasks(conn, tasks)

        n = await self._tx(run, durable=True, rows=len(tasks))
        self._waker.wake(t.queue for t in tasks)
        return n

    async def queues_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        """Return the queue and status of each stored task among ``ids``."""
        arg = sql.ids_json(ids)
        rows = await self.db.call(
            lambda c: c.execute(sql.QUEUES_OF, (arg,)).fetchall(), offload=len(ids) > DIRECT_ROWS
        )
        return {id: (q, status_of(st)) for id, q, st in rows}

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks by priority, run_at, id in one statement.

        The statement also stores ``worker`` and gives nothing from a paused queue.
        """
        if limit <= 0:
            return []
        now = self.now()
        args = (token, now + lease_seconds, worker or None, queue, now, limit)

        def run(conn: schema.Conn) -> tuple[int, list[Any]]:
            version = sql.data_version(conn)
            rows = self._write(conn, lambda c: c.execute(sql.CLAIM, args).fetchall())
            return version, rows

        version, rows = await self.db.call(run, offload=limit > DIRECT_ROWS)
        self._writes += 1
        self._seen[queue] = version
        out, unreadable = sql.COLUMNS.claimed(rows)
        if unreadable:
            await self._kill_unreadable(unreadable, token)
        out.sort(key=lambda t: (-t.priority, t.run_at, t.id))
        if len(rows) == limit:
            self._waker.wake((queue,))  # more may be ready: wake this driver's other waiters
        return out

    async def _kill_unreadable(self, outcomes: list[Outcome], token: str) -> None:
        # Claimed rows that cannot be read: KILLED with their reason at once,
        # under the claim's lease (if this fails, their lease expires as usual).
        try:
            await self.settle(outcomes, token)
        except Exception:
            log.exception("%s: could not settle %d unreadable row(s)", self.path, len(outcomes))
        for o in outcomes:
            log.error("%s: task %s killed: %s", self.path, o.id, o.error)

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING, ``started_at`` now."""
        if ids:
            args = (self.now(), sql.ids_json(ids), token)
            await self._tx(lambda c: c.execute(sql.START, args), rows=len(ids))
            self._waker.changed()

    async def extend(
        self,
        ids: Sequence[str],
        token: str,
        lease_seconds: float,
        progress: Mapping[str, str] | None = None,
    ) -> Extended:
        """Extend the leases still held, storing their progress, in one statement.

        Returns:
          The ids still held and, among them, those whose cancellation was requested.
        """
        if not ids:
            return Extended([])
        arg, expires = sql.ids_json(ids), self.now() + lease_seconds
        if progress:
            statement = sql.EXTEND_PROGRESS
            args: tuple[Any, ...] = (expires, msgspec.json.encode(dict(progress)), arg, token)
        else:
            statement, args = sql.EXTEND, (expires, arg, token)
        rows = await self._tx(lambda c: c.execute(statement, args).fetchall(), rows=len(ids))
        if progress and rows:
            self._waker.changed()
        flags = dict(rows)
        return Extended([id for id in ids if id in flags], [id for id in ids if flags.get(id)])

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Apply outcomes whose lease is still held (compare-and-set on token and status).

        One statement applies ``apply_outcome``'s rules, a requested
        cancellation and a snooze included, to the whole batch; an outcome
        whose texts JSON cannot carry intact (a result that is not UTF-8
        text, a NUL character) has a statement of its own, with the same rules.
        """
        if not outcomes:
            return []
        now = self.now()
        batch, single = sql.settle_rows(outcomes)

        def run(conn: schema.Conn) -> list[tuple[str, str]]:
            args = {"now": now, "token": token}
            applied = conn.execute(sql.SETTLE_BATCH, {**args, "outcomes": batch}).fetchall()
            for params in single:
                applied += conn.execute(sql.SETTLE_ONE, {**args, **params}).fetchall()
            sql.count_settled(conn, applied)
            return [(id, queue) for id, queue, _ in applied]

        held = dict(await self._tx(run, rows=len(outcomes)))
        if held:
            self._waker.changed()
        again = {o.id for o in outcomes if o.status in _RESCHEDULED}
        if again:
            self._waker.wake(q for id, q in held.items() if id in again)
        return [id for id in dict.fromkeys(o.id for o in outcomes) if id in held]

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back as PENDING, uncounting their attempt (or end them CANCELLED).

        A task whose cancellation was requested becomes CANCELLED instead.
        """
        if not ids:
            return 0
        args = (self.now(), sql.ids_json(ids), token)
        rows = await self._tx(lambda c: c.execute(sql.RELEASE, args).fetchall(), rows=len(ids))
        if rows:
            self._waker.changed()
        self._waker.wake(r[0] for r in rows)
        return len(rows)

    async def rescue(self, queue: str | None) -> int:
        """Recover expired leases: KILLED when out of attempts, else FAILED now.

        A task whose cancellation was requested becomes CANCELLED.
        """
        args = {"now": self.now(), "queue": queue}

        def run(conn: schema.Conn) -> list[Any]:
            # A read first: no write lock taken when nothing expired (the usual case).
            if conn.execute(sql.EXPIRED, args).fetchone() is None:
                return []
            return self._write(conn, lambda c: c.execute(sql.RESCUE, args).fetchall())

        rows = await self.db.call(run)
        if rows:
            self._waker.changed()
        self._waker.wake(r[0] for r in rows if r[1] == "failed")
        return len(rows)

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest run_at of a waiting task of ``queue`` (None while it is paused)."""
        row = await self.db.call(lambda c: c.execute(sql.NEXT_RUN_AT, (queue,)).fetchone())
        return None if row is None else row[0]

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Wait for a push to ``queue`` (this process) or any commit by another connection.

        Another connection's commit shows as a new ``PRAGMA data_version``. On
        Linux the driver sleeps until inotify reports a write to the WAL file,
        then reads it every ``poll_min`` seconds at first, doubling up to
        ``poll_max``, until it changes or ``poll_max`` passed since the last
        write (a commit is visible a moment after its last write). Without
        inotify it reads it on that schedule all along.
        """
        seen = self._seen.get(queue)
        if seen is None:
            seen = self._seen[queue] = await self.db.call(sql.data_version)
        await self._waker.wait(queue, seen, partial(self.db.call, sql.data_version), max_wait)

    async def aclose(self) -> None:
        """Close the connection and its thread (idempotent)."""
        self._waker.close()
        await self.db.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.db.closed else "open"
        wake = "inotify" if self.watching else "poll"
        return f"<SqliteDriver {self.path!r} {state} synchronous={self._synchronous} wake={wake}>"
