"""The SQLite backend's schema, every statement ``SqliteDriver`` runs, and connection set-up.

Migrations are SQL scripts applied in order on open; the statements are the
ones the driver runs, each for a whole batch. The column lists come from
``StoredTask``'s fields (``_columns.py``).
"""

from __future__ import annotations

import logging
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec

from .._driver import StoredTask
from .._errors import BackendError
from .._registry import redact_url
from .._task import Status
from ._columns import TEXT_COLUMNS, meta_json

log = logging.getLogger("trioqueue.backends.sqlite")

Conn = sqlite3.Connection

#: The migrations, in order; the schema's version is how many were applied.
#: Each is a script of statements run in one transaction. Never edit one that
#: shipped: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """\
CREATE TABLE trioqueue_tasks (
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
        );
-- The claim query walks this in claim order.
CREATE INDEX trioqueue_tasks_claim
            ON trioqueue_tasks (queue, priority DESC, run_at, id)
            WHERE status IN ('pending', 'failed');
-- next_run_at: the earliest waiting task of a queue.
CREATE INDEX trioqueue_tasks_schedule
            ON trioqueue_tasks (queue, run_at)
            WHERE status IN ('pending', 'failed');
-- rescue: leases that expired.
CREATE INDEX trioqueue_tasks_lease
            ON trioqueue_tasks (lease_expires_at)
            WHERE status IN ('queued', 'running');
-- purge: finished tasks by age.
CREATE INDEX trioqueue_tasks_finished
            ON trioqueue_tasks (finished_at)
            WHERE status IN ('done', 'killed', 'cancelled');
""",
    # 2: the bounded traceback of a task's last failure.
    "ALTER TABLE trioqueue_tasks ADD COLUMN traceback TEXT;",
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)


#: The table's columns and how each differs from the record's field.
COLUMNS = TEXT_COLUMNS
row_to_task = COLUMNS.record

# -- statements --

_COLS = COLUMNS.select
INSERT = (
    f"INSERT OR IGNORE INTO trioqueue_tasks ({_COLS}) "
    f"VALUES ({', '.join('?' * len(COLUMNS.names))})"
)
# A new task's outcome and lease columns are the table's defaults: its insert
# binds 8 values, not 15 (about a tenth less time per row, measured).
_FRESH = ("id", "queue", "payload", "max_attempts", "run_at", "priority", "meta", "created_at")
INSERT_FRESH = (
    f"INSERT OR IGNORE INTO trioqueue_tasks ({', '.join(_FRESH)}, status) "
    f"VALUES ({', '.join('?' * len(_FRESH))}, 'pending')"
)
CLAIM = f"""
UPDATE trioqueue_tasks
SET status = 'queued', attempts = attempts + 1, lease_token = ?, lease_expires_at = ?
WHERE rowid IN (
    SELECT rowid FROM trioqueue_tasks INDEXED BY trioqueue_tasks_claim
    WHERE queue = ? AND status IN ('pending', 'failed') AND run_at <= ?
    ORDER BY priority DESC, run_at, id
    LIMIT ?
)
RETURNING {_COLS}
"""
# Batches of ids travel as one JSON array parameter: one cached statement for any size.
_IDS = "id IN (SELECT value FROM json_each(?))"
_HELD = "lease_token = ? AND status IN ('queued', 'running')"
START = (
    f"UPDATE trioqueue_tasks SET status = 'running' "
    f"WHERE {_IDS} AND lease_token = ? AND status = 'queued'"
)
EXTEND = f"UPDATE trioqueue_tasks SET lease_expires_at = ? WHERE {_IDS} AND {_HELD} RETURNING id"
SETTLE_HELD = f"SELECT id, queue FROM trioqueue_tasks WHERE {_IDS} AND {_HELD}"
SETTLE = """
UPDATE trioqueue_tasks SET
    status = CASE WHEN :status = 'failed' AND attempts >= max_attempts
                  THEN 'killed' ELSE :status END,
    result = CASE WHEN :status = 'done' THEN :result ELSE result END,
    last_error = CASE WHEN :status = 'done' AND :error IS NULL THEN last_error ELSE :error END,
    traceback = CASE WHEN :status = 'done' THEN traceback ELSE :traceback END,
    run_at = CASE WHEN :status = 'failed' AND attempts < max_attempts
                  THEN :now + :delay ELSE run_at END,
    finished_at = CASE WHEN :status = 'failed' AND attempts < max_attempts
                       THEN finished_at ELSE :now END,
    lease_token = NULL, lease_expires_at = NULL
WHERE id = :id AND lease_token = :token AND status IN ('queued', 'running')
"""
RELEASE = f"""
UPDATE trioqueue_tasks
SET status = 'pending', attempts = max(0, attempts - 1), lease_token = NULL, lease_expires_at = NULL
WHERE {_IDS} AND {_HELD}
RETURNING queue
"""
EXPIRED = """
SELECT 1 FROM trioqueue_tasks
WHERE status IN ('queued', 'running') AND lease_expires_at <= :now
  AND (:queue IS NULL OR queue = :queue)
LIMIT 1
"""
RESCUE = """
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
NEXT_RUN_AT = (
    "SELECT min(run_at) FROM trioqueue_tasks WHERE queue = ? AND status IN ('pending', 'failed')"
)
COUNTS = """
SELECT queue, status, count(*) FROM trioqueue_tasks
WHERE (:queue IS NULL OR queue = :queue)
GROUP BY queue, status
"""
LIST_TASKS = f"""
SELECT {_COLS} FROM trioqueue_tasks
WHERE (:queue IS NULL OR queue = :queue) AND (:status IS NULL OR status = :status)
ORDER BY id DESC LIMIT :limit OFFSET :offset
"""
GET = f"SELECT {_COLS} FROM trioqueue_tasks WHERE id = ?"
QUEUES_OF = f"SELECT id, queue, status FROM trioqueue_tasks WHERE {_IDS}"
RETRY = """
UPDATE trioqueue_tasks SET status = 'pending', run_at = ?, finished_at = NULL,
    max_attempts = max(max_attempts, attempts + 1)
WHERE id = ? AND status IN ('failed', 'killed') RETURNING queue
"""
CANCEL = """
UPDATE trioqueue_tasks SET status = 'cancelled', finished_at = ?
WHERE id = ? AND status IN ('pending', 'failed')
"""
PURGE = """
DELETE FROM trioqueue_tasks
WHERE status IN ('done', 'killed', 'cancelled') AND finished_at < ?
"""
#: Changes whenever another connection commits (read by ``wait_for_tasks``).
DATA_VERSION = "PRAGMA data_version"

SYNCHRONOUS_MODES = ("off", "normal", "full")

#: WAL frames past which a commit on the connection thread checkpoints (SQLite's default).
WAL_AUTOCHECKPOINT = 1000


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock (``SQLITE_BUSY``, any variant)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # before Python 3.11
        return "locked" in str(exc) or "busy" in str(exc)
    return bool(code & 0xFF == sqlite3.SQLITE_BUSY)


_fresh_head = operator.attrgetter("id", "queue", "payload", "max_attempts", "run_at", "priority")
_fresh_tail = operator.attrgetter(
    "status",
    "attempts",
    "last_error",
    "result",
    "finished_at",
    "lease_token",
    "lease_expires_at",
    "traceback",
)
_FRESH_TAIL = (Status.PENDING, 0, None, None, None, None, None, None)


def insert_rows(tasks: Sequence[StoredTask]) -> tuple[str, list[Sequence[Any]]]:
    """Return the insert statement for ``tasks`` and its rows.

    ``INSERT_FRESH`` when every task is new (PENDING, no attempt, no outcome,
    no lease), else ``INSERT`` with every column.
    """
    rows: list[Sequence[Any]] = []
    append, head, tail, fresh = rows.append, _fresh_head, _fresh_tail, _FRESH_TAIL
    for t in tasks:
        if tail(t) != fresh:
            return INSERT, COLUMNS.rows(tasks)
        meta = t.meta
        append((*head(t), meta_json(meta), t.created_at))
    return INSERT_FRESH, rows


def ids_json(ids: Iterable[str]) -> str:
    return msgspec.json.encode([str(id) for id in ids]).decode()


def data_version(conn: Conn) -> int:
    return int(conn.execute(DATA_VERSION).fetchone()[0])


@contextmanager
def immediate(conn: Conn, *, full_sync: bool = False) -> Iterator[None]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction: commit, or roll back on error.

    ``full_sync`` makes this commit ``synchronous = FULL`` (then back to NORMAL).
    """
    if full_sync:
        conn.execute("PRAGMA synchronous = FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if full_sync:
            conn.execute("PRAGMA synchronous = NORMAL")


def parse_bool(name: str, value: object) -> bool:
    """Read a boolean option given as a bool or as URL text (``1/0``, ``true/false``, ``yes/no``).

    Raises:
      ValueError: for anything else.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean, got {value!r}")


def parse_target(target: str) -> tuple[str, dict[str, str]]:
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
        raise ValueError(f"not a SQLite URL: {redact_url(target)!r}")
    if parts.netloc:
        raise ValueError(
            f"a SQLite URL has no host: use sqlite:///relative.db or sqlite:////abs.db, "
            f"got {redact_url(target)!r}"
        )
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    return path or ":memory:", dict(parse_qsl(parts.query))


def open_connection(
    path: str, busy_timeout: float, synchronous: str, migrate: bool
) -> tuple[Conn, str | None]:
    """Open, set up and migrate the database; return it and the file its commits write.

    The connection is left with ``busy_timeout`` and ``wal_autocheckpoint`` at 0
    (the driver sets them around the calls it runs on its connection thread).
    The file is the WAL file in WAL mode, the database file otherwise, None in memory.
    """
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
        watched = None
        if path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: journal_mode is %s, not wal", path, mode)
            file = conn.execute("PRAGMA database_list").fetchone()[2]
            watched = file + "-wal" if mode.lower() == "wal" else file
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        migrate_file(conn, path, migrate)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA busy_timeout = 0")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise BackendError(f"cannot open the SQLite database {path!r}: {exc}") from exc
        raise
    return conn, watched or None


def _statements(script: str) -> Iterator[str]:
    # One statement at a time (executescript would commit the open transaction).
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"an incomplete statement ends the script: {pending.strip()[:60]!r}")


def migrate_file(conn: Conn, path: str, migrate: bool) -> None:
    with immediate(conn):
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
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            log.info("%s: migrated the schema to version %d", path, step + 1)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM trioqueue_schema")
            conn.execute("INSERT INTO trioqueue_schema (version) VALUES (?)", (SCHEMA_VERSION,))
