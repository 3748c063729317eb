"""``SqliteStore``: the SQLite driver's statements on a small pool of blocking connections.

Thread-safe: each call borrows a connection of its own. Writes are ``BEGIN
IMMEDIATE`` transactions synced to disk before they return, as the Trio
driver's pushes are; a worker of another process wakes on the commit's write
to the WAL file (inotify), as it does for any other process's push.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .._driver import RetentionRule, StoredTask
from .._durations import seconds_option
from .._errors import BackendError, PushError
from .._sink import IfExists
from ..backends import _sqlite_schema as schema
from ..backends import _sqlite_statements as sql
from ..backends._columns import status_of
from ._common import Held

__all__ = ["SqliteStore", "sqlite_options"]

T = TypeVar("T")


#: SQLite URL options a Trio backend reads and a client has no use for.
_TRIO_ONLY = ("poll_min", "poll_max", "watch")


def sqlite_options(url: str, busy_timeout: float) -> tuple[str, float, str]:
    """Return the path, ``busy_timeout`` and ``synchronous`` a SQLite URL gives a client.

    The options only a Trio backend reads (``poll_min``, ``poll_max``,
    ``watch``) are accepted and ignored, so that one URL serves both.

    Raises:
      ValueError: for a malformed URL or an unknown option.
    """
    path, options = schema.parse_target(url)
    for name in _TRIO_ONLY:
        options.pop(name, None)
    busy = seconds_option("busy_timeout", options.pop("busy_timeout", busy_timeout))
    synchronous = options.pop("synchronous", "normal").lower()
    if options:
        raise ValueError(f"unknown SQLite URL options: {sorted(options)}")
    return path, busy, synchronous


class SqliteStore:
    """Blocking access to one SQLite file with the SQLite driver's statements.

    Args:
      path: The database file (made and migrated when missing).
      busy_timeout: Seconds a write waits for another connection's lock.
      synchronous: ``"normal"`` (pushes synced to disk on commit) or ``"full"``/``"off"``.
      migrate: Create or upgrade the schema on open.
      pool_size: Connections kept at most (one per concurrent call).
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "normal",
        migrate: bool = True,
        pool_size: int = 4,
    ) -> None:
        if path == ":memory:":
            raise ValueError("a client needs a SQLite file that a worker can open too")
        if synchronous not in schema.SYNCHRONOUS_MODES:
            raise ValueError(
                f"synchronous must be one of {schema.SYNCHRONOUS_MODES}, got {synchronous!r}"
            )
        self.path = path
        self._busy = busy_timeout
        self._sync = synchronous
        self._free: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        conn = self._connect(migrate)
        self._file = os.path.realpath(conn.execute("PRAGMA database_list").fetchone()[2])
        self._free.put(conn)

    def _connect(self, migrate: bool) -> sqlite3.Connection:
        conn, _ = schema.open_connection(self.path, self._busy, self._sync, migrate)
        # The Trio driver turns these off on its own thread; a client's calls may wait.
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy * 1000)}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {schema.WAL_AUTOCHECKPOINT}")
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise BackendError("the client is closed")
        self._slots.acquire()
        try:
            try:
                conn = self._free.get_nowait()
            except queue.Empty:
                conn = self._connect(False)
            try:
                yield conn
            finally:
                if conn.in_transaction:  # interrupted half-way: never reuse it so
                    conn.rollback()
                self._free.put(conn)
        finally:
            self._slots.release()

    def _call(self, what: str, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        error = PushError if what == "push" else BackendError
        try:
            with self._conn() as conn:
                if not write:
                    return fn(conn)
                with schema.immediate(conn, full_sync=self._sync == "normal"):
                    return fn(conn)
        except sqlite3.Error as exc:
            raise error(f"SQLite {self.path!r}: could not {what}: {exc}") from exc

    # -- operations --

    def insert(self, records: list[StoredTask], if_exists: IfExists) -> tuple[int, Held]:
        """Store ``records`` in one transaction; return how many and the ids found taken."""
        ids = sql.ids_json(r.id for r in records)

        def run(conn: sqlite3.Connection) -> tuple[int, Held]:
            if if_exists == "replace_finished":
                conn.execute(sql.DELETE_FINISHED, (ids,))
            n = sql.insert_tasks(conn, records)
            if n >= len(records):
                return n, {}
            found = conn.execute(sql.QUEUES_OF, (ids,)).fetchall()
            return n, {id: (q, status_of(st)) for id, q, st in found}

        return self._call("push", run, write=True)

    def insert_on(self, conn: sqlite3.Connection, record: StoredTask) -> None:
        """Insert ``record`` with the caller's connection, in its transaction (no commit)."""
        file = conn.execute("PRAGMA database_list").fetchone()[2]
        if not file or os.path.realpath(file) != self._file:
            raise ValueError(
                f"the connection is to {file or 'a memory database'!r}, not the "
                f"client's {self._file!r}"
            )
        sql.insert_tasks(conn, [record])

    def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        row = self._call("read a task", lambda c: c.execute(sql.GET, (id,)).fetchone(), write=False)
        return None if row is None else sql.COLUMNS.shown(row)

    def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task; flag a QUEUED or RUNNING one (its worker stops it)."""
        args = (time.time(), id)
        rows = self._call(
            "cancel a task", lambda c: c.execute(sql.CANCEL, args).fetchall(), write=True
        )
        return bool(rows)

    def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule."""
        row = (queue, rule.done, rule.killed, rule.cancelled)
        self._call(
            "store a queue's retention", lambda c: c.execute(sql.SET_RETENTION, row), write=True
        )

    def retentions(self, queues: list[str]) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues``, by queue."""
        arg = sql.ids_json(queues)
        rows = self._call(
            "read a retention", lambda c: c.execute(sql.RETENTIONS, (arg,)).fetchall(), write=False
        )
        return {q: RetentionRule(d, k, c) for q, d, k, c in rows}

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SqliteStore {self.path!r} {state} connections={len(self._all)}>"
