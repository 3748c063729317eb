"""Every statement ``SqliteDriver`` runs, each for a whole batch, and the rows they bind.

The column lists come from ``StoredTask``'s fields (``_columns.py``); the
tables are made by the migrations in ``_sqlite_schema.py``.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from .._driver import StoredTask
from .._task import Status
from ._columns import TEXT_COLUMNS, meta_json

Conn = sqlite3.Connection

#: The table's columns and how each differs from the record's field.
COLUMNS = TEXT_COLUMNS
row_to_task = COLUMNS.record

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
