"""The SQLite backend: one file, several processes, no server (the embedded default).

Every call runs on a worker thread (one connection per driver, used by one
thread at a time). Writes are ``BEGIN IMMEDIATE`` transactions, so two
processes never claim the same task; pushes are synced to disk before they
are acknowledged. See ``docs/sqlite.md``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import trio

from .._backend import Backend
from .._codec import Codec
from .._driver import Outcome, StoredTask
from .._errors import BackendClosed, BackendError
from .._task import Status

__all__ = ["SCHEMA_VERSION", "SqliteBackend", "SqliteDriver"]

log = logging.getLogger("trioqueue.backends.sqlite")

T = TypeVar("T")

_Conn = sqlite3.Connection

#: Each step brings the schema from version ``i`` to ``i + 1``; append, never edit.
_MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE trioqueue_tasks (
            id TEXT PRIMARY KEY NOT NULL,
            queue TEXT NOT NULL,
            payload BLOB NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 25,
            run_at REAL NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}',
            last_error TEXT,
            result BLOB,
            created_at REAL NOT NULL,
            finished_at REAL,
            lease_token TEXT,
            lease_expires_at REAL
        )""",
        # The claim query walks this in claim order.
        """CREATE INDEX trioqueue_tasks_claim
            ON trioqueue_tasks (queue, priority DESC, run_at, id)
            WHERE status IN ('pending', 'failed')""",
        # next_run_at: the earliest waiting task of a queue.
        """CREATE INDEX trioqueue_tasks_schedule
            ON trioqueue_tasks (queue, run_at)
            WHERE status IN ('pending', 'failed')""",
        # rescue: leases that expired.
        """CREATE INDEX trioqueue_tasks_lease
            ON trioqueue_tasks (lease_expires_at)
            WHERE status IN ('queued', 'running')""",
        # purge: finished tasks by age.
        """CREATE INDEX trioqueue_tasks_finished
            ON trioqueue_tasks (finished_at)
            WHERE status IN ('done', 'killed', 'cancelled')""",
    ),
]

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(_MIGRATIONS)

_COLUMNS = (
    "id, queue, payload, status, attempts, max_attempts, run_at, priority, meta, "
    "last_error, result, created_at, finished_at, lease_token, lease_expires_at"
)
_INSERT = f"INSERT OR IGNORE INTO trioqueue_tasks ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_CLAIM = f"""
UPDATE trioqueue_tasks
SET status = 'queued', attempts = attempts + 1, lease_token = ?, lease_expires_at = ?
WHERE rowid IN (
    SELECT rowid FROM trioqueue_tasks INDEXED BY trioqueue_tasks_claim
    WHERE queue = ? AND status IN ('pending', 'failed') AND run_at <= ?
    ORDER BY priority DESC, run_at, id
    LIMIT ?
)
RETURNING {_COLUMNS}
"""
# Batches of ids travel as one JSON array parameter: one cached statement for any size.
_IDS = "id IN (SELECT value FROM json_each(?))"
_HELD = "lease_token = ? AND status IN ('queued', 'running')"
_START = (
    f"UPDATE trioqueue_tasks SET status = 'running' "
    f"WHERE {_IDS} AND lease_token = ? AND status = 'queued'"
)
_EXTEND = f"UPDATE trioqueue_tasks SET lease_expires_at = ? WHERE {_IDS} AND {_HELD} RETURNING id"
_SETTLE_HELD = f"SELECT id, queue FROM trioqueue_tasks WHERE {_IDS} AND {_HELD}"
_SETTLE = """
UPDATE trioqueue_tasks SET
    status = CASE WHEN :status = 'failed' AND attempts >= max_attempts
                  THEN 'killed' ELSE :status END,
    result = CASE WHEN :status = 'done' THEN :result ELSE result END,
    last_error = CASE WHEN :status = 'done' THEN last_error ELSE :error END,
    run_at = CASE WHEN :status = 'failed' AND attempts < max_attempts
                  THEN :now + :delay ELSE run_at END,
    finished_at = CASE WHEN :status = 'failed' AND attempts < max_attempts
                       THEN finished_at ELSE :now END,
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND status IN ('queued', 'running')
"""
_RELEASE = f"""
UPDATE trioqueue_tasks
SET status = 'pending', attempts = max(0, attempts - 1), lease_token = NULL, lease_expires_at = NULL
WHERE {_IDS} AND {_HELD}
RETURNING queue
"""
_EXPIRED = """
SELECT 1 FROM trioqueue_tasks
WHERE status IN ('queued', 'running') AND lease_expires_at <= :now
  AND (:queue IS NULL OR queue = :queue)
LIMIT 1
"""
_RESCUE = """
UPDATE trioqueue_tasks SET
    status = CASE WHEN attempts >= max_attempts THEN 'killed' ELSE 'failed' END,
    last_error = CASE WHEN attempts >= max_attempts
        THEN 'lease expired on attempt ' || attempts || ' of ' || max_attempts
        ELSE 'lease expired on attempt ' || attempts END,
    finished_at = CASE WHEN attempts >= max_attempts THEN :now ELSE finished_at END,
    run_at = CASE WHEN attempts >= max_attempts THEN run_at ELSE :now END,
    lease_token = NULL, lease_expires_at = NULL
WHERE status IN ('queued', 'running') AND lease_expires_at <= :now
  AND (:queue IS NULL OR queue = :queue)
RETURNING queue, status
"""
_NEXT_RUN_AT = (
    "SELECT min(run_at) FROM trioqueue_tasks WHERE queue = ? AND status IN ('pending', 'failed')"
)

_SYNCHRONOUS = ("off", "normal", "full")


def _encode_meta(meta: dict[str, Any]) -> str:
    return msgspec.json.encode(dict(meta)).decode()


def _row(r: Sequence[Any]) -> StoredTask:
    return StoredTask(
        r[0],
        r[1],
        bytes(r[2]),
        Status(r[3]),
        r[4],
        r[5],
        r[6],
        r[7],
        msgspec.json.decode(r[8]),
        r[9],
        None if r[10] is None else bytes(r[10]),
        r[11],
        r[12],
        r[13],
        r[14],
    )


def _ids(ids: Iterable[str]) -> str:
    return msgspec.json.encode([str(id) for id in ids]).decode()


def _parse_target(target: str) -> tuple[str, dict[str, str]]:
    """Split a ``sqlite:///path.db?opt=value`` URL (or a plain path) into path and options.

    ``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs.db``
    absolute, ``sqlite://`` or ``sqlite:///:memory:`` a private in-memory database.

    Raises:
      ValueError: for a URL with a host, or of another scheme.
    """
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"a SQLite target must be a URL or a path, got {type(target).__name__}")
    target = os.fspath(target)
    if not target.lower().startswith("sqlite:"):
        return target, {}
    parts = urlsplit(target)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a SQLite URL: {target!r}")
    if parts.netloc:
        raise ValueError(
            f"a SQLite URL has no host: use sqlite:///relative.db or sqlite:////abs.db, "
            f"got {target!r}"
        )
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    return path or ":memory:", dict(parse_qsl(parts.query))


class SqliteDriver:
    """A storage driver on one SQLite file, safe to share between processes.

    Make one with ``await SqliteDriver.connect(path)`` and close it with
    ``aclose()`` (``SqliteBackend.open`` does both). Each method runs on a
    worker thread holding the driver's one connection; writes are
    ``BEGIN IMMEDIATE`` transactions, so claims by several processes never overlap.

    Args:
      conn: An open connection (``isolation_level=None``, ``check_same_thread=False``).
      path: The database path, for messages.
      clock: A function returning POSIX seconds (default ``time.time``).
      synchronous: ``"off"``, ``"normal"`` or ``"full"`` (see ``docs/sqlite.md``).
      poll_min, poll_max: The first and the longest pause of ``wait_for_tasks``'s polling.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        clock: Callable[[], float] | None = None,
        synchronous: str = "normal",
        poll_min: float = 0.005,
        poll_max: float = 0.1,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._clock = clock if clock is not None else time.time
        self._synchronous = synchronous
        self._poll_min = poll_min
        self._poll_max = poll_max
        self._limiter = trio.CapacityLimiter(1)
        self._wake: dict[str, trio.Event] = {}
        self._seen: dict[str, int] = {}  # data_version read before the last claim, per queue

    @classmethod
    async def connect(
        cls,
        path: str,
        *,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        busy_timeout: float = 5.0,
        synchronous: str = "normal",
        poll_min: float = 0.005,
        poll_max: float = 0.1,
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

        Returns:
          The driver; the caller owns it and must ``aclose()`` it.

        Raises:
          BackendError: if the file cannot be opened, is not a database, has a
            schema newer than this code (or older, with ``migrate=False``).
        """
        if synchronous not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        if not busy_timeout >= 0:
            raise ValueError(f"busy_timeout must be >= 0 seconds, got {busy_timeout!r}")
        if not 0 < poll_min <= poll_max:
            raise ValueError(f"need 0 < poll_min <= poll_max, got {poll_min!r}, {poll_max!r}")
        conn = await trio.to_thread.run_sync(
            _connect, path, busy_timeout, synchronous, migrate, abandon_on_cancel=False
        )
        return cls(
            conn,
            path=path,
            clock=clock,
            synchronous=synchronous,
            poll_min=poll_min,
            poll_max=poll_max,
        )

    def now(self) -> float:
        """Return the injected clock, or ``time.time()``."""
        return self._clock()

    # -- plumbing --

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._conn is None:
            raise BackendClosed(f"the SQLite driver for {self.path!r} is closed")
        # Shielded: a call cancelled while it waits for the connection would be
        # lost to a caller that already took its batch (outcomes, releases).
        # Each call is short (bounded by busy_timeout), so cancellation waits for it.
        conn = self._conn
        with trio.CancelScope(shield=True):
            out = await trio.to_thread.run_sync(fn, conn, *args, limiter=self._limiter)
        return out

    def _write(self, conn: _Conn, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        # Runs on the worker thread: one BEGIN IMMEDIATE transaction around fn.
        sync = durable and self._synchronous == "normal"
        if sync:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if sync:
                conn.execute("PRAGMA synchronous = NORMAL")
        return out

    async def _tx(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> T:
        def run(conn: _Conn) -> T:
            return self._write(conn, fn, *args, durable=durable)

        return await self._call(run)

    def _wake_queues(self, queues: Iterable[str]) -> None:
        for q in set(queues):
            ev = self._wake.get(q)
            if ev is not None and not ev.is_set():
                ev.set()

    # -- the Driver protocol --

    async def insert(self, tasks: Sequence[StoredTask]) -> int:
        """Store new tasks (``INSERT OR IGNORE``), synced to disk before returning."""
        if not tasks:
            return 0
        rows = [
            (
                t.id,
                t.queue,
                t.payload,
                t.status.value,
                t.attempts,
                t.max_attempts,
                t.run_at,
                t.priority,
                _encode_meta(t.meta),
                t.last_error,
                t.result,
                t.created_at,
                t.finished_at,
                t.lease_token,
                t.lease_expires_at,
            )
            for t in tasks
        ]

        def run(conn: _Conn) -> int:
            before = conn.total_changes
            conn.executemany(_INSERT, rows)
            return conn.total_changes - before

        n = await self._tx(run, durable=True)
        self._wake_queues(t.queue for t in tasks)
        return n

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks by priority, run_at, id in one statement."""
        if limit <= 0:
            return []
        now = self.now()

        def run(conn: _Conn) -> tuple[int, list[Any]]:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            rows = self._write(
                conn,
                lambda c: c.execute(
                    _CLAIM, (token, now + lease_seconds, queue, now, limit)
                ).fetchall(),
            )
            return version, rows

        version, rows = await self._call(run)
        self._seen[queue] = version
        out = [_row(r) for r in rows]
        out.sort(key=lambda t: (-t.priority, t.run_at, t.id))
        if len(out) == limit:
            self._wake_queues((queue,))  # more may be ready: wake this driver's other waiters
        return out

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING."""
        if ids:
            arg = _ids(ids)
            await self._tx(lambda c: c.execute(_START, (arg, token)))

    async def extend(self, ids: Sequence[str], token: str, lease_seconds: float) -> list[str]:
        """Extend the leases still held; return their ids."""
        if not ids:
            return []
        arg, expires = _ids(ids), self.now() + lease_seconds
        rows = await self._tx(lambda c: c.execute(_EXTEND, (expires, arg, token)).fetchall())
        kept = {r[0] for r in rows}
        return [id for id in ids if id in kept]

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Apply outcomes whose lease is still held (compare-and-set on token and status)."""
        if not outcomes:
            return []
        now = self.now()

        def run(conn: _Conn) -> list[tuple[str, str]]:
            held = dict(conn.execute(_SETTLE_HELD, (_ids(o.id for o in outcomes), token)))
            params: list[dict[str, Any]] = [
                {
                    "id": o.id,
                    "token": token,
                    "status": o.status.value,
                    "result": o.result,
                    "error": o.error,
                    "now": now,
                    "delay": max(0.0, o.delay),
                }
                for o in outcomes
                if o.id in held
            ]
            conn.executemany(_SETTLE, params)
            return [(o.id, held[o.id]) for o in outcomes if o.id in held]

        applied = await self._tx(run)
        failed = {o.id for o in outcomes if o.status is Status.FAILED}
        if failed:
            self._wake_queues(q for id, q in applied if id in failed)
        return [id for id, _ in applied]

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back as PENDING, uncounting their attempt."""
        if not ids:
            return 0
        arg = _ids(ids)
        rows = await self._tx(lambda c: c.execute(_RELEASE, (arg, token)).fetchall())
        self._wake_queues(r[0] for r in rows)
        return len(rows)

    async def rescue(self, queue: str | None) -> int:
        """Recover expired leases: KILLED when out of attempts, else FAILED now."""
        args = {"now": self.now(), "queue": queue}

        def run(conn: _Conn) -> list[Any]:
            # A read first: no write lock taken when nothing expired (the usual case).
            if conn.execute(_EXPIRED, args).fetchone() is None:
                return []
            return self._write(conn, lambda c: c.execute(_RESCUE, args).fetchall())

        rows = await self._call(run)
        self._wake_queues(r[0] for r in rows if r[1] == "failed")
        return len(rows)

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest run_at of a PENDING or FAILED task of ``queue``."""
        row = await self._call(lambda c: c.execute(_NEXT_RUN_AT, (queue,)).fetchone())
        return None if row is None else row[0]

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Wait for a push to ``queue`` (this process) or any commit by another connection.

        Polls ``PRAGMA data_version`` every 5 ms at first, backing off to 100 ms.
        """
        ev = self._wake.get(queue)
        if ev is None:
            ev = self._wake[queue] = trio.Event()
        seen = self._seen.get(queue)
        if seen is None:
            seen = self._seen[queue] = await self._call(_data_version)
        deadline = trio.current_time() + max_wait
        pause = self._poll_min
        while not ev.is_set():
            left = deadline - trio.current_time()
            if left <= 0:
                break
            with trio.move_on_after(min(pause, left)):
                await ev.wait()
            if ev.is_set() or await self._call(_data_version) != seen:
                break
            pause = min(pause * 2, self._poll_max)
        if ev.is_set() and self._wake.get(queue) is ev:
            self._wake[queue] = trio.Event()

    # -- inspection and administration --

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Count tasks per queue and status."""
        sql = "SELECT queue, status, count(*) FROM trioqueue_tasks"
        args: tuple[Any, ...] = ()
        if queue is not None:
            sql, args = sql + " WHERE queue = ?", (queue,)
        rows = await self._call(
            lambda c: c.execute(sql + " GROUP BY queue, status", args).fetchall()
        )
        out: dict[str, dict[Status, int]] = {}
        for q, status, n in rows:
            out.setdefault(q, {})[Status(status)] = n
        return out

    async def list_tasks(
        self, *, queue: str | None, status: Status | None, limit: int, offset: int
    ) -> list[StoredTask]:
        """List tasks, newest id first."""
        where, args = [], []
        if queue is not None:
            where.append("queue = ?")
            args.append(queue)
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        sql = f"SELECT {_COLUMNS} FROM trioqueue_tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        params = (*args, max(0, limit), max(0, offset))
        rows = await self._call(lambda c: c.execute(sql, params).fetchall())
        return [_row(r) for r in rows]

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        sql = f"SELECT {_COLUMNS} FROM trioqueue_tasks WHERE id = ?"
        row = await self._call(lambda c: c.execute(sql, (id,)).fetchone())
        return None if row is None else _row(row)

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed."""
        sql = (
            "UPDATE trioqueue_tasks SET status = 'pending', run_at = ?, finished_at = NULL, "
            "max_attempts = max(max_attempts, attempts + 1) "
            "WHERE id = ? AND status IN ('failed', 'killed') RETURNING queue"
        )
        args = (self.now(), id)
        rows = await self._tx(lambda c: c.execute(sql, args).fetchall(), durable=True)
        self._wake_queues(r[0] for r in rows)
        return bool(rows)

    async def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task."""
        sql = (
            "UPDATE trioqueue_tasks SET status = 'cancelled', finished_at = ? "
            "WHERE id = ? AND status IN ('pending', 'failed')"
        )
        args = (self.now(), id)
        return bool(await self._tx(lambda c: c.execute(sql, args).rowcount, durable=True))

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``."""
        sql = (
            "DELETE FROM trioqueue_tasks "
            "WHERE status IN ('done', 'killed', 'cancelled') AND finished_at < ?"
        )
        return int(await self._tx(lambda c: c.execute(sql, (older_than,)).rowcount, durable=True))

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            async with self._limiter:
                await trio.to_thread.run_sync(conn.close)

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<SqliteDriver {self.path!r} {state} synchronous={self._synchronous}>"


def _data_version(conn: _Conn) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _connect(path: str, busy_timeout: float, synchronous: str, migrate: bool) -> _Conn:
    # Runs on a worker thread.
    if sqlite3.sqlite_version_info < (3, 35, 0):
        raise BackendError(
            f"trioqueue needs SQLite 3.35 or newer (RETURNING), this Python has "
            f"{sqlite3.sqlite_version}"
        )
    try:
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise BackendError(f"cannot open the SQLite database {path!r}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: journal_mode is %s, not wal", path, mode)
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        _migrate(conn, path, migrate)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise BackendError(f"cannot open the SQLite database {path!r}: {exc}") from exc
        raise
    return conn


def _migrate(conn: _Conn, path: str, migrate: bool) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS trioqueue_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM trioqueue_schema").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise BackendError(
                f"the SQLite database {path!r} has schema version {version}, newer than "
                f"this trioqueue knows ({SCHEMA_VERSION}): upgrade trioqueue"
            )
        if version < SCHEMA_VERSION and not migrate:
            raise BackendError(
                f"the SQLite database {path!r} has schema version {version}, older than "
                f"{SCHEMA_VERSION}: open it with migrate=True"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
            log.info("%s: migrated the schema to version %d", path, step + 1)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM trioqueue_schema")
            conn.execute("INSERT INTO trioqueue_schema (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteBackend(Backend):
    """The SQLite backend (``sqlite:///path.db``): durable, embedded, multi-process.

    Example::

        async with SqliteBackend.open("sqlite:///jobs.db", queue="email") as backend:
            await backend.push({"to": "a@example.com"})

    Several processes (and several ``open()`` calls in one process) may use the
    same file: each has its own connection and claims never overlap.
    """

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        target: str,
        *,
        queue: str = "default",
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        **options: Any,
    ) -> AsyncIterator[SqliteBackend]:
        """Open (creating if needed) the SQLite database ``target`` for the block.

        Args:
          target: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (query
            options allowed: ``?busy_timeout=10&synchronous=full``) or a plain path.
          queue: The queue pushed to and claimed from (default ``"default"``).
          codec: The codec (default ``JsonCodec()``).
          clock: A function returning POSIX seconds (for tests that move time by hand).
          migrate: Create or upgrade the schema (default True).
          **options: ``busy_timeout`` (seconds, default 5), ``synchronous``
            (``"off"``, ``"normal"``, ``"full"``), ``poll_min`` and ``poll_max``
            (seconds, default 0.005 and 0.1) and the bridge options
            (``push_buffer``, ``insert_batch``, ``insert_attempts``).

        Raises:
          BackendError: if the database cannot be opened or its schema is unusable;
            the sqlite3 error is the ``__cause__``.
          ValueError: for a malformed URL or option.

        Resource handling:
          The connection is closed when the block exits.
        """
        path, url_options = _parse_target(target)
        busy_timeout = float(options.pop("busy_timeout", url_options.pop("busy_timeout", 5.0)))
        synchronous = str(options.pop("synchronous", url_options.pop("synchronous", "normal")))
        poll_min = float(options.pop("poll_min", url_options.pop("poll_min", 0.005)))
        poll_max = float(options.pop("poll_max", url_options.pop("poll_max", 0.1)))
        if url_options:
            raise ValueError(f"unknown SQLite URL options: {sorted(url_options)}")
        driver = await SqliteDriver.connect(
            path,
            clock=clock,
            migrate=migrate,
            busy_timeout=busy_timeout,
            synchronous=synchronous.lower(),
            poll_min=poll_min,
            poll_max=poll_max,
        )
        try:
            backend = cls(driver, queue=queue, codec=codec, **options)
        except BaseException:
            with trio.CancelScope(shield=True):
                await driver.aclose()
            raise
        async with backend.running():
            yield backend
