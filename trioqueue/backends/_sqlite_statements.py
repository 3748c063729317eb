"""Every statement ``SqliteDriver`` runs, each for a whole batch, and the rows they bind.

The column lists come from ``StoredTask``'s fields (``_columns.py``); the
tables are made by the migrations in ``_sqlite_schema.py``.
"""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
from collections.abc import Iterable, Sequence
from math import isfinite
from typing import Any

import msgspec

from .._driver import CANCEL_REQUESTED, Outcome, StoredTask, WorkerRecord
from .._task import Status
from ._columns import TEXT_COLUMNS, meta_json, status_text
from ._sqlite_listing import BELOW as BELOW
from ._sqlite_listing import LIST_PROBE as LIST_PROBE
from ._sqlite_listing import LIST_PROBES as LIST_PROBES
from ._sqlite_listing import LIST_TASKS as LIST_TASKS
from ._sqlite_listing import LIST_TASKS_OF_STATUS as LIST_TASKS_OF_STATUS
from ._sqlite_listing import LIST_TASKS_OF_STATUS_BY_ID as LIST_TASKS_OF_STATUS_BY_ID
from ._sqlite_schema import BUMP_FINISHED, FINISHED, FINISHED_COUNTS, NOT_EMPTY_META

Conn = sqlite3.Connection

_NUL = "\x00"

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
# Binds (token, lease expiry, worker, queue, now, limit). A paused queue gives
# nothing: its row in trioqueue_paused is looked up once, in the same statement.
CLAIM = f"""
UPDATE trioqueue_tasks
SET status = 'queued', attempts = attempts + 1, lease_token = ?1, lease_expires_at = ?2,
    worker = ?3
WHERE rowid IN (
    SELECT rowid FROM trioqueue_tasks INDEXED BY trioqueue_tasks_claim
    WHERE queue = ?4 AND status IN ('pending', 'failed') AND run_at <= ?5
      AND NOT EXISTS (SELECT 1 FROM trioqueue_paused AS p WHERE p.queue = ?4)
    ORDER BY priority DESC, run_at, id
    LIMIT ?6
)
RETURNING {_COLS}
"""
# Batches of ids travel as one JSON array parameter: one cached statement for any size.
_IDS = "id IN (SELECT value FROM json_each(?))"
_HELD = "lease_token = ? AND status IN ('queued', 'running')"
# ``last_error`` of a task whose cancellation was requested, as a SQL literal.
_CANCELLED = "'" + CANCEL_REQUESTED.replace("'", "''") + "'"
START = (
    f"UPDATE trioqueue_tasks SET status = 'running', started_at = ? "
    f"WHERE {_IDS} AND lease_token = ? AND status = 'queued'"
)
EXTEND = (
    f"UPDATE trioqueue_tasks SET lease_expires_at = ? WHERE {_IDS} AND {_HELD} "
    f"RETURNING id, cancel_requested"
)
# The same, storing progress: the second parameter is a JSON object of ids to
# progress texts (json_each's own ``id`` column is why the table is named).
EXTEND_PROGRESS = f"""
UPDATE trioqueue_tasks SET lease_expires_at = ?,
    progress = coalesce(
        (SELECT p.value FROM json_each(?) AS p WHERE p.key = trioqueue_tasks.id), progress)
WHERE {_IDS} AND {_HELD}
RETURNING id, cancel_requested
"""
SETTLE_HELD = f"SELECT id, queue FROM trioqueue_tasks WHERE {_IDS} AND {_HELD}"
# The rules of ``apply_outcome``, written once over the outcome rows ``o``
# (a column ``o_<name>`` per name of ``_OUTCOME``) and the parameters :now and
# :token; ``+status``: the task is found by its id, not by its status. A task is
# scheduled again when it failed with attempts left or snoozed (PENDING),
# unless its cancellation was requested: then it ends CANCELLED whatever the
# outcome. Unqualified names are the task's own columns, before the update.
_AGAIN = (
    "NOT cancel_requested AND "
    "(o.o_status = 'pending' OR (o.o_status = 'failed' AND attempts < max_attempts))"
)
_SNOOZE = "NOT cancel_requested AND o.o_status = 'pending'"
_APPLY = f"""
WITH o AS {{outcomes}}
UPDATE trioqueue_tasks SET
    status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN o.o_status = 'failed' AND attempts >= max_attempts THEN 'killed'
                  ELSE o.o_status END,
    result = CASE WHEN o.o_status = 'done' AND NOT cancel_requested THEN o.o_result
                  ELSE result END,
    last_error = CASE
        WHEN cancel_requested THEN coalesce(nullif(o.o_error, ''), {_CANCELLED})
        WHEN o.o_status = 'pending' OR (o.o_status = 'done' AND o.o_error IS NULL)
        THEN last_error
        ELSE o.o_error END,
    traceback = CASE WHEN NOT cancel_requested AND o.o_status IN ('done', 'pending')
                     THEN traceback ELSE o.o_traceback END,
    attempts = CASE WHEN {_SNOOZE} THEN max(0, attempts - 1) ELSE attempts END,
    snoozes = CASE WHEN {_SNOOZE} THEN snoozes + 1 ELSE snoozes END,
    run_at = CASE WHEN {_AGAIN} THEN :now + o.o_delay ELSE run_at END,
    finished_at = CASE WHEN {_AGAIN} THEN finished_at ELSE :now END,
    started_at = coalesce(o.o_started_at, started_at),
    progress = coalesce(o.o_progress, progress),
    cancel_requested = 0, lease_token = NULL, lease_expires_at = NULL
FROM o
WHERE trioqueue_tasks.id = o.o_id AND lease_token = :token AND +status IN ('queued', 'running')
"""
# The outcome row's columns, in the order of a ``settle_rows`` row.
_OUTCOME = ("id", "status", "result", "error", "traceback", "delay", "started_at", "progress")
#: One outcome, bound by name: the fields of ``_OUTCOME``, now and token.
#: Gives the id, queue and new status of the task if it settled it.
SETTLE_ONE = (
    _APPLY.format(
        outcomes="(SELECT " + ", ".join(f":{name} AS o_{name}" for name in _OUTCOME) + ")"
    )
    + "RETURNING id, queue, status\n"
)
# The batch's rows, each read once from the JSON text (MATERIALIZED: not once
# per use in the rules). A result travels as JSON text, stored as its UTF-8 bytes.
# json_extract, not the ->> operator: SQLite 3.35 (the oldest supported) lacks it.
_ROWS = ", ".join(
    f"CAST(json_extract(value, '$[{i}]') AS BLOB) AS o_result"
    if name == "result"
    else f"json_extract(value, '$[{i}]') AS o_{name}"
    for i, name in enumerate(_OUTCOME)
)
#: A batch of outcomes in one statement, bound by name: now, token and
#: outcomes (the JSON array of ``settle_rows``). Gives the id, queue and new
#: status of each task it settled.
SETTLE_BATCH = (
    _APPLY.format(outcomes=f"MATERIALIZED (SELECT {_ROWS} FROM json_each(:outcomes))")
    + "RETURNING id, queue, status\n"
)


def count_settled(conn: Conn, applied: Iterable[Sequence[str]]) -> None:
    """Count the tasks a settle made DONE, given its rows ``(id, queue, status)``.

    Every statement that settles held tasks (``SETTLE_BATCH``, ``SETTLE_ONE``)
    must be followed by this in its transaction: the finished counters'
    trigger leaves a held task becoming DONE to it (one statement a batch
    instead of one a row). KILLED and CANCELLED ones are the trigger's.
    """
    done: dict[str, int] = {}
    for row in applied:
        if row[2] == "done":
            done[row[1]] = done.get(row[1], 0) + 1
    for queue, n in done.items():
        conn.execute(BUMP_FINISHED, (queue, "done", n))


# Binds (now, ids, token).
RELEASE = f"""
UPDATE trioqueue_tasks SET
    status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'pending' END,
    attempts = CASE WHEN cancel_requested THEN attempts ELSE max(0, attempts - 1) END,
    last_error = CASE WHEN cancel_requested THEN {_CANCELLED} ELSE last_error END,
    finished_at = CASE WHEN cancel_requested THEN ? ELSE finished_at END,
    cancel_requested = 0, lease_token = NULL, lease_expires_at = NULL
WHERE {_IDS} AND {_HELD}
RETURNING queue
"""
EXPIRED = """
SELECT 1 FROM trioqueue_tasks
WHERE status IN ('queued', 'running') AND lease_expires_at <= :now
  AND (:queue IS NULL OR queue = :queue)
LIMIT 1
"""
_ENDS = "(cancel_requested OR attempts >= max_attempts)"
RESCUE = f"""
UPDATE trioqueue_tasks SET
    status = CASE WHEN cancel_requested THEN 'cancelled'
                  WHEN attempts >= max_attempts THEN 'killed' ELSE 'failed' END,
    last_error = CASE WHEN cancel_requested THEN {_CANCELLED}
        WHEN attempts >= max_attempts
        THEN 'lease expired on attempt ' || attempts || ' of ' || max_attempts
        ELSE 'lease expired on attempt ' || attempts END,
    finished_at = CASE WHEN {_ENDS} THEN :now ELSE finished_at END,
    run_at = CASE WHEN {_ENDS} THEN run_at ELSE :now END,
    cancel_requested = 0, lease_token = NULL, lease_expires_at = NULL
WHERE status IN ('queued', 'running') AND lease_expires_at <= :now
  AND (:queue IS NULL OR queue = :queue)
RETURNING queue, status
"""
# NULL when none waits, or the queue is paused. Read from the claim index, in
# (queue, priority DESC, run_at) order: a loose scan over the queue's waiting
# priorities (each the next one below), and the earliest run_at of each, every
# step one search of the index.
_WAITING = (
    "FROM trioqueue_tasks INDEXED BY trioqueue_tasks_claim "
    "WHERE queue = ?1 AND status IN ('pending', 'failed')"
)
NEXT_RUN_AT = f"""
WITH RECURSIVE levels (priority) AS (
    SELECT max(priority) {_WAITING}
    UNION ALL
    SELECT (SELECT max(priority) {_WAITING} AND priority < levels.priority)
    FROM levels WHERE levels.priority IS NOT NULL
)
SELECT min((SELECT min(run_at) {_WAITING} AND priority = levels.priority))
FROM levels
WHERE levels.priority IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM trioqueue_paused AS p WHERE p.queue = ?1)
"""
# Depth without reading finished tasks: the unfinished ones through the two
# partial indexes that hold only them (small: waiting and held tasks), the
# finished ones from their counters (migration 13).
_OF_QUEUE = "(:queue IS NULL OR queue = :queue)"
COUNTS = f"""
SELECT queue, status, count(*) FROM trioqueue_tasks INDEXED BY trioqueue_tasks_claim
WHERE status IN ('pending', 'failed') AND {_OF_QUEUE}
GROUP BY queue, status
UNION ALL
SELECT queue, status, count(*) FROM trioqueue_tasks INDEXED BY trioqueue_tasks_lease
WHERE status IN ('queued', 'running') AND {_OF_QUEUE}
GROUP BY queue, status
UNION ALL
SELECT queue, status, n FROM {FINISHED_COUNTS} WHERE n <> 0 AND {_OF_QUEUE}
"""
GET = f"SELECT {_COLS} FROM trioqueue_tasks WHERE id = ?"
GET_MANY = f"SELECT {_COLS} FROM trioqueue_tasks WHERE {_IDS}"
QUEUES_OF = f"SELECT id, queue, status FROM trioqueue_tasks WHERE {_IDS}"
RETRY = """
UPDATE trioqueue_tasks SET status = 'pending', run_at = ?, finished_at = NULL,
    max_attempts = max(max_attempts, attempts + 1)
WHERE id = ? AND status IN ('failed', 'killed') RETURNING queue
"""
# ``retry`` of many, leaving the tasks of workflow runs out (a retry by id
# resumes their run): binds (now, ids as JSON).
RETRY_MANY = f"""
UPDATE trioqueue_tasks SET status = 'pending', run_at = ?, finished_at = NULL,
    max_attempts = max(max_attempts, attempts + 1)
WHERE {_IDS} AND status IN ('failed', 'killed')
    AND NOT ({NOT_EMPTY_META} AND json_valid(meta)
             AND json_extract(meta, '$.trioqueue_run') IS NOT NULL)
RETURNING queue
"""
# PENDING or FAILED: CANCELLED at once; QUEUED or RUNNING: flagged. Binds (now, id).
CANCEL = """
UPDATE trioqueue_tasks SET
    status = CASE WHEN status IN ('pending', 'failed') THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status IN ('pending', 'failed') THEN ? ELSE finished_at END,
    cancel_requested = status IN ('queued', 'running')
WHERE id = ? AND status IN ('pending', 'failed', 'queued', 'running')
RETURNING status
"""
# ``cancel`` of many: binds (now, ids as JSON).
CANCEL_MANY = f"""
UPDATE trioqueue_tasks SET
    status = CASE WHEN status IN ('pending', 'failed') THEN 'cancelled' ELSE status END,
    finished_at = CASE WHEN status IN ('pending', 'failed') THEN ? ELSE finished_at END,
    cancel_requested = status IN ('queued', 'running')
WHERE {_IDS} AND status IN ('pending', 'failed', 'queued', 'running')
RETURNING status
"""
# ``replace``: the final tasks among the ids go, in the insert's transaction.
DELETE_FINISHED = f"DELETE FROM trioqueue_tasks WHERE {_IDS} AND {FINISHED}"
#: A node of a workflow run that is RUNNING: purge and delete leave it (the
#: run's joins read its result). The empty meta of most tasks is one comparison.
_META_OF = (
    "CASE WHEN json_valid(trioqueue_tasks.meta) THEN json_extract(trioqueue_tasks.meta, '$.{}') END"
)
NOT_OF_LIVE_RUN = f"""NOT ({NOT_EMPTY_META} AND {_META_OF.format("trioqueue_node")} IS NOT NULL
    AND EXISTS (SELECT 1 FROM trioqueue_tasks AS r
                WHERE r.id = {_META_OF.format("trioqueue_run")} AND r.status = 'running'))"""
DELETE = (
    f"DELETE FROM trioqueue_tasks WHERE {_IDS} AND status NOT IN ('queued', 'running') "
    f"AND {NOT_OF_LIVE_RUN}"
)
HISTOGRAM = f"""
SELECT CAST((finished_at - :since) / :step AS INTEGER) AS bucket, status, count(*)
FROM trioqueue_tasks INDEXED BY trioqueue_tasks_finished
WHERE {FINISHED} AND finished_at >= :since
GROUP BY bucket, status ORDER BY bucket
"""
PURGE = f"""
DELETE FROM trioqueue_tasks
WHERE {FINISHED} AND finished_at < ? AND {NOT_OF_LIVE_RUN}
"""
# Retention: at most :limit rows of :queue (NULL: any queue), each past its
# status's cutoff (NULL: kept), found through the index of finished tasks
# (below :oldest, the latest cutoff).
PRUNE = f"""
DELETE FROM trioqueue_tasks WHERE rowid IN (
    SELECT rowid FROM trioqueue_tasks INDEXED BY trioqueue_tasks_finished
    WHERE {FINISHED} AND finished_at < :oldest
      AND (:queue IS NULL OR queue = :queue)
      AND ((status = 'done' AND finished_at < :done)
           OR (status = 'killed' AND finished_at < :killed)
           OR (status = 'cancelled' AND finished_at < :cancelled))
      AND {NOT_OF_LIVE_RUN}
    LIMIT :limit
)
"""
PAUSE = "INSERT OR IGNORE INTO trioqueue_paused (queue) VALUES (?)"
RESUME = "DELETE FROM trioqueue_paused WHERE queue = ?"
PAUSED = "SELECT queue FROM trioqueue_paused ORDER BY queue"
SET_RETENTION = (
    "INSERT INTO trioqueue_retention (queue, done, killed, cancelled) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (queue) DO UPDATE SET done = excluded.done, killed = excluded.killed, "
    "cancelled = excluded.cancelled"
)
CLEAR_RETENTION = "DELETE FROM trioqueue_retention WHERE queue = ?"
RETENTIONS = (
    "SELECT queue, done, killed, cancelled FROM trioqueue_retention "
    "WHERE ?1 IS NULL OR queue IN (SELECT value FROM json_each(?1)) ORDER BY queue"
)
#: The workers' table's columns: ``WorkerRecord``'s fields, in order.
WORKER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(WorkerRecord))
_WORKER_COLS = ", ".join(WORKER_FIELDS)
REGISTER_WORKER = (
    f"INSERT INTO trioqueue_workers ({_WORKER_COLS}) "
    f"VALUES ({', '.join('?' * len(WORKER_FIELDS))}) ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in WORKER_FIELDS if n != "name")
)
REMOVE_WORKER = "DELETE FROM trioqueue_workers WHERE name = ?"
WORKERS = f"SELECT {_WORKER_COLS} FROM trioqueue_workers WHERE last_seen > ? ORDER BY name"
PRUNE_WORKERS = "DELETE FROM trioqueue_workers WHERE last_seen < ?"
#: Changes whenever another connection commits (read by ``wait_for_tasks``).
DATA_VERSION = "PRAGMA data_version"
#: Counts the cancellations requested of claimed tasks (read by ``wait_for_cancel``).
CANCEL_GENERATION = "SELECT generation FROM trioqueue_signals WHERE name = 'cancel'"
SIGNAL_CANCEL = "UPDATE trioqueue_signals SET generation = generation + 1 WHERE name = 'cancel'"


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
    "started_at",
    "worker",
    "progress",
    "snoozes",
    "cancel_requested",
)
_FRESH_TAIL = (Status.PENDING, 0, None, None, None, None, None, None, None, None, None, 0, False)


def insert_rows(tasks: Sequence[StoredTask]) -> tuple[str, list[Sequence[Any]]]:
    """Return the insert statement for ``tasks`` and its rows.

    ``INSERT_FRESH`` when every task is new (PENDING, no attempt, no outcome,
    no lease, never started), else ``INSERT`` with every column; for
    ``executemany``.
    """
    rows: list[Sequence[Any]] = []
    append, head, tail, fresh = rows.append, _fresh_head, _fresh_tail, _FRESH_TAIL
    for t in tasks:
        if tail(t) != fresh:
            return INSERT, COLUMNS.rows(tasks)
        meta = t.meta
        append((*head(t), meta_json(meta), t.created_at))
    return INSERT_FRESH, rows


def insert_tasks(conn: Conn, tasks: Sequence[StoredTask]) -> int:
    """Store ``tasks`` (``INSERT OR IGNORE``, in the caller's transaction); return how many.

    A task stored already final is added to the finished counters here: an
    insert trigger would cost every push (a trigger runs as a program of its
    own for every row, whatever its ``WHEN``: about 0.8 µs a row, measured).
    Such a batch is stored row by row, in order (a rare one: replacing
    pushes, imported records).
    """
    statement, rows = insert_rows(tasks)
    if statement == INSERT_FRESH or not any(t.status.is_final for t in tasks):
        return int(conn.executemany(statement, rows).rowcount)
    n = 0
    for t, row in zip(tasks, rows, strict=True):
        stored = int(conn.execute(statement, row).rowcount)
        n += stored
        if stored and t.status.is_final:
            conn.execute(BUMP_FINISHED, (t.queue, status_text(t.status), 1))
    return n


def _plain(value: Any) -> str:
    # A ``str`` subclass (a ``TaskId``) as its text; anything else is an error.
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} in an outcome")


_encode = msgspec.json.Encoder(enc_hook=_plain).encode


def settle_rows(outcomes: Iterable[Outcome]) -> tuple[str, list[dict[str, Any]]]:
    """Return the ``SETTLE_BATCH`` JSON of ``outcomes`` and the ``SETTLE_ONE`` rows of the rest.

    An outcome goes to the batch when JSON carries it intact: its result, if
    any, is UTF-8 text, no text holds a NUL character (SQLite's JSON functions
    end a text there) and its times are finite numbers. Of several outcomes
    for one id, the first is applied, as when each ran in turn.
    """
    batch: list[list[Any]] = []
    single: list[dict[str, Any]] = []
    seen: set[str] = set()
    for o in outcomes:
        if o.id in seen:
            continue
        seen.add(o.id)
        delay, result = max(0.0, o.delay), o.result
        row = [  # in the order of _OUTCOME
            o.id, status_text(o.status), result, o.error, o.traceback, delay, o.started_at,
            o.progress,
        ]  # fmt: skip
        intact = isfinite(delay) and (o.started_at is None or isfinite(o.started_at))
        if result is not None:
            try:
                row[2] = bytes(result).decode("utf-8")  # JSON text, stored back as bytes
            except UnicodeDecodeError:
                intact = False
        if intact and not any(isinstance(v, str) and _NUL in v for v in row):
            batch.append(row)
        else:
            row[2] = result
            single.append(dict(zip(_OUTCOME, row, strict=True)))
    return _encode(batch).decode(), single


def ids_json(ids: Iterable[str]) -> str:
    return msgspec.json.encode([str(id) for id in ids]).decode()


def data_version(conn: Conn) -> int:
    return int(conn.execute(DATA_VERSION).fetchone()[0])


def cancel_generation(conn: Conn) -> int:
    row = conn.execute(CANCEL_GENERATION).fetchone()
    return 0 if row is None else int(row[0])
