"""The PostgreSQL driver's inspection and administration statements, composed once per schema.

Reads, retries and cancellations of single tasks, replacing pushes,
retention, paused queues and the workers' registry (``_pg_admin`` runs
them). The worker's own statements are in ``_pg_statements``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._driver import StoredTask, WorkerRecord
from .._task import Status
from ._pg_schema import COLUMNS
from ._pg_statements import INSERTED, PAYLOAD, Statements, composer

__all__ = ["AdminStatements"]

#: The statuses a task ends in.
FINAL = (Status.DONE, Status.KILLED, Status.CANCELLED)

#: A node of a workflow run that is RUNNING (the deleted row is ``t``): purge
#: and delete leave it, as the run's joins read its result.
_NOT_OF_LIVE_RUN = (
    "NOT (t.meta ? 'trioqueue_node' AND EXISTS (SELECT 1 FROM {s}.tasks r "
    "WHERE r.id = t.meta->>'trioqueue_run' AND r.status = 'running'))"
)

#: The columns a replacing push resets to their defaults (those it does not insert).
_RESET = {
    "last_error": "NULL",
    "result": "NULL",
    "finished_at": "NULL",
    "lease_token": "NULL",
    "lease_expires_at": "NULL",
    "traceback": "NULL",
    "started_at": "NULL",
    "worker": "NULL",
    "progress": "NULL",
    "snoozes": "0",
    "cancel_requested": "false",
}


class AdminStatements:
    """The administration statements of one schema (channels as ``statements``')."""

    def __init__(self, schema: str, statements: Statements) -> None:
        self._st = statements
        q = composer(schema)
        #: The advisory lock's key of ``compact_finished`` (hashed by the server).
        self.compact_lock = f"trioqueue:{schema}:finished_counts"
        assert set(_RESET) | set(INSERTED) == set(COLUMNS.names)
        # Depth without reading finished tasks (``queue_depth``, migration 11):
        # the unfinished ones through the partial indexes that hold only them,
        # the finished ones summed from their ledger. The last column is how
        # many ledger rows each sum read (0 for the others).
        self.counts = q("SELECT queue, status, n, ledger FROM {s}.queue_depth(%(queue)s::text)")
        # Folds the ledger into one row per queue and status (none for a sum of
        # 0) once it holds more than ``after`` rows. Rows appended meanwhile are
        # not in the delete's snapshot and stay; a second folder at the same
        # time skips its turn (the advisory lock).
        self.compact_finished = q(
            """WITH l AS (SELECT (SELECT count(*) FROM {s}.finished_counts) > %(after)s
                    AND pg_try_advisory_xact_lock(hashtext(%(lock)s::text)) AS ok),
            d AS (DELETE FROM {s}.finished_counts WHERE (SELECT ok FROM l)
                  RETURNING queue, status, n),
            i AS (INSERT INTO {s}.finished_counts (queue, status, n)
                  SELECT queue, status, sum(n) FROM d GROUP BY queue, status
                  HAVING sum(n) <> 0 RETURNING 1)
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM i)"""
        )
        self.list_tasks = q(
            "SELECT {cols} FROM {s}.tasks "
            "WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text) "
            "AND (%(before)s::text IS NULL OR id < %(before)s::text) "
            "ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"
        )
        # One statement per status, its value written in the text: a partial
        # index serves only a plan made for that value (a prepared statement's
        # generic plan, made for any ``status = $1``, could use none of them).
        self.list_tasks_of_status = {
            st: q(
                "SELECT {cols} FROM {s}.tasks "
                f"WHERE status = '{st.value}' "
                "AND (%(queue)s::text IS NULL OR queue = %(queue)s::text) "
                "AND (%(before)s::text IS NULL OR id < %(before)s::text) "
                "ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"
            )
            for st in Status
        }
        self.get = q("SELECT {cols} FROM {s}.tasks WHERE id = %(id)s")
        self.get_many = q("SELECT {cols} FROM {s}.tasks WHERE id = ANY(%(ids)s::text[])")
        self.queues_of = q(
            "SELECT id, queue, status FROM {s}.tasks WHERE id = ANY(%(ids)s::text[])"
        )
        # A final task of the same id is overwritten in place (every column:
        # the inserted ones from the new record, the others to their defaults);
        # one that is not final is kept (the update's condition fails).
        sets = ", ".join(
            [f"{c} = EXCLUDED.{c}" for c in INSERTED if c != "id"]
            + [f"{c} = {v}" for c, v in _RESET.items()]
        )
        self.replace = q(
            """WITH ins AS (
                INSERT INTO {s}.tasks AS t ({icols})
                SELECT {values} FROM unnest({arrays}) AS x({icols})
                ON CONFLICT (id) DO UPDATE SET """
            + sets
            + """ WHERE t.status IN ('done', 'killed', 'cancelled')
                RETURNING queue),
            n AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM ins) d)
            SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)"""
        )
        self.retry = q(
            """WITH u AS (UPDATE {s}.tasks SET status = 'pending', run_at = %(now)s,
                finished_at = NULL, max_attempts = greatest(max_attempts, attempts + 1)
                WHERE id = %(id)s AND status IN ('failed', 'killed') RETURNING id, queue),
            n AS (SELECT pg_notify(%(channel)s, queue) FROM u),
            c AS (SELECT pg_notify(%(change)s, json_build_array(id)::text) FROM u)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n), (SELECT count(*) FROM c)"""
        )
        # What a retry needs to decide (``retry_kind``): the task and its run record.
        self.retry_read = q(
            "SELECT t.status, t.meta::text, r.status FROM {s}.tasks t "
            "LEFT JOIN {s}.tasks r ON t.meta ? 'trioqueue_run' "
            "AND r.id = t.meta->>'trioqueue_run' AND r.meta->>'trioqueue_run' = r.id "
            "AND NOT r.meta ? 'trioqueue_node' WHERE t.id = %(id)s"
        )
        # The resume of a KILLED or CANCELLED run (``FlowDriver``): its failed,
        # killed and cancelled tasks PENDING, then the run record RUNNING;
        # nothing while one of its tasks is still claimed, or if none would run.
        run_tasks = "meta ? 'trioqueue_run' AND meta->>'trioqueue_run' = %(run)s AND id <> %(run)s"
        self.resume_run = q(
            """WITH r AS (SELECT id FROM {s}.tasks WHERE id = %(run)s
                    AND status IN ('killed', 'cancelled') AND meta->>'trioqueue_run' = id
                    AND NOT meta ? 'trioqueue_node'
                FOR UPDATE),
            busy AS (SELECT 1 FROM {s}.tasks WHERE """
            + run_tasks
            + """ AND status IN ('queued', 'running') LIMIT 1),
            n AS (UPDATE {s}.tasks SET status = 'pending', run_at = greatest(run_at, %(now)s),
                    finished_at = NULL, cancel_requested = false,
                    max_attempts = greatest(max_attempts, attempts + 1)
                WHERE """
            + run_tasks
            + """ AND status IN ('failed', 'killed', 'cancelled')
                  AND EXISTS (SELECT 1 FROM r) AND NOT EXISTS (SELECT 1 FROM busy)
                RETURNING queue),
            u AS (UPDATE {s}.tasks SET status = 'running', finished_at = NULL,
                    cancel_requested = false
                WHERE id IN (SELECT id FROM r) AND EXISTS (SELECT 1 FROM n) RETURNING id),
            w AS (SELECT pg_notify(%(channel)s, d.q) FROM (SELECT DISTINCT queue AS q FROM n) d
                WHERE EXISTS (SELECT 1 FROM u)),
            c AS (SELECT pg_notify(%(change)s, json_build_array(id)::text) FROM u)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM w), (SELECT count(*) FROM c)"""
        )
        # PENDING or FAILED: CANCELLED now, a change. QUEUED or RUNNING:
        # flagged, and the cancel channel tells the workers (its listeners
        # take it for a change too). One notification either way.
        self.cancel = q(
            """WITH u AS (UPDATE {s}.tasks SET
                status = CASE WHEN status IN ('pending', 'failed') THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status IN ('pending', 'failed')
                                   THEN %(now)s ELSE finished_at END,
                cancel_requested = status IN ('queued', 'running')
                WHERE id = %(id)s AND status IN ('pending', 'failed', 'queued', 'running')
                RETURNING id, cancel_requested),
            c AS (SELECT pg_notify(CASE WHEN cancel_requested THEN %(cancel)s ELSE %(change)s END,
                                   json_build_array(id)::text) FROM u)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c)"""
        )
        # The batched forms of ``retry`` and ``cancel`` (a bulk operation's
        # page): one notification per channel, its payload the ids while they
        # fit in PostgreSQL's 8000 bytes, else '' (``PAYLOAD``).
        self.retry_many = q(
            """WITH u AS (UPDATE {s}.tasks SET status = 'pending', run_at = %(now)s,
                finished_at = NULL, max_attempts = greatest(max_attempts, attempts + 1)
                WHERE id = ANY(%(ids)s::text[]) AND status IN ('failed', 'killed')
                    AND NOT meta ? 'trioqueue_run'  -- a run's tasks: retried by id, resumed
                RETURNING id, queue),
            n AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM u) d),
            ids AS (SELECT json_agg(id) AS j FROM u),
            c AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM ids WHERE j IS NOT NULL)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n), (SELECT count(*) FROM c)"""
        )
        self.cancel_many = q(
            """WITH u AS (UPDATE {s}.tasks SET
                status = CASE WHEN status IN ('pending', 'failed') THEN 'cancelled' ELSE status END,
                finished_at = CASE WHEN status IN ('pending', 'failed')
                                   THEN %(now)s ELSE finished_at END,
                cancel_requested = status IN ('queued', 'running')
                WHERE id = ANY(%(ids)s::text[])
                  AND status IN ('pending', 'failed', 'queued', 'running')
                RETURNING id, cancel_requested),
            f AS (SELECT json_agg(id) AS j FROM u WHERE cancel_requested),
            e AS (SELECT json_agg(id) AS j FROM u WHERE NOT cancel_requested),
            cf AS (SELECT pg_notify(%(cancel)s, """
            + PAYLOAD
            + """) FROM f WHERE j IS NOT NULL),
            ce AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM e WHERE j IS NOT NULL)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM cf),
                   (SELECT count(*) FROM ce)"""
        )
        self.purge = q(
            "WITH d AS (DELETE FROM {s}.tasks AS t WHERE status IN ('done', 'killed', 'cancelled') "
            f"AND finished_at < %(before)s AND {_NOT_OF_LIVE_RUN} RETURNING 1) "
            "SELECT count(*) FROM d"
        )
        # At most ``limit`` tasks of the queue (NULL: any) per call, each before its status's cutoff
        # (NULL: a status not pruned); ``finished_at < latest`` lets the scan
        # use the index of finished tasks. Stale workers go in the same statement.
        self.prune = q(
            """WITH d AS (DELETE FROM {s}.tasks WHERE id IN (
                SELECT id FROM {s}.tasks AS t
                WHERE status IN ('done', 'killed', 'cancelled') AND finished_at < %(latest)s
                  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
                  AND finished_at < CASE status WHEN 'done' THEN %(done)s::float8
                                                WHEN 'killed' THEN %(killed)s::float8
                                                ELSE %(cancelled)s::float8 END
                  AND """
            + _NOT_OF_LIVE_RUN
            + """
                LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
                RETURNING 1),
            w AS (DELETE FROM {s}.workers WHERE last_seen < %(workers_before)s RETURNING 1)
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM w)"""
        )
        self.delete = q(
            """WITH d AS (DELETE FROM {s}.tasks AS t WHERE id = ANY(%(ids)s::text[])
                AND status NOT IN ('queued', 'running') AND """
            + _NOT_OF_LIVE_RUN
            + """ RETURNING id),
            ids AS (SELECT json_agg(id) AS j FROM d),
            c AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM ids WHERE j IS NOT NULL)
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM c)"""
        )
        self.finished_histogram = q(
            "SELECT floor((finished_at - %(since)s::float8) / %(step)s::float8)::int8, status, "
            "count(*) FROM {s}.tasks WHERE status IN ('done', 'killed', 'cancelled') "
            "AND finished_at >= %(since)s::float8 GROUP BY 1, 2 ORDER BY 1"
        )
        self.pause = q(
            "INSERT INTO {s}.paused_queues (queue) VALUES (%(queue)s) ON CONFLICT DO NOTHING"
        )
        # Always wakes the queue's consumers (as the memory driver does).
        self.resume = q(
            """WITH d AS (DELETE FROM {s}.paused_queues WHERE queue = %(queue)s RETURNING 1)
            SELECT (SELECT count(*) FROM d), pg_notify(%(channel)s, %(queue)s)"""
        )
        self.paused = q("SELECT queue FROM {s}.paused_queues ORDER BY queue")
        self.set_retention = q(
            "INSERT INTO {s}.retention (queue, done, killed, cancelled) "
            "VALUES (%(queue)s, %(done)s, %(killed)s, %(cancelled)s) "
            "ON CONFLICT (queue) DO UPDATE SET done = EXCLUDED.done, "
            "killed = EXCLUDED.killed, cancelled = EXCLUDED.cancelled RETURNING queue"
        )
        self.clear_retention = q("DELETE FROM {s}.retention WHERE queue = %(queue)s")
        self.retentions = q(
            "SELECT queue, done, killed, cancelled FROM {s}.retention "
            "WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]) ORDER BY queue"
        )
        self.register_worker = q(
            """INSERT INTO {s}.workers AS w
                (name, host, pid, queue, concurrency, running, started_at, last_seen)
            VALUES (%(name)s, %(host)s, %(pid)s, %(queue)s, %(concurrency)s, %(running)s,
                    %(started_at)s, %(now)s)
            ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
                queue = EXCLUDED.queue, concurrency = EXCLUDED.concurrency,
                running = EXCLUDED.running, started_at = EXCLUDED.started_at,
                last_seen = EXCLUDED.last_seen"""
        )
        self.remove_worker = q("DELETE FROM {s}.workers WHERE name = %(name)s")
        self.workers = q(
            "SELECT name, host, pid, queue, concurrency, running, started_at, last_seen "
            "FROM {s}.workers WHERE last_seen > %(after)s ORDER BY name"
        )

    def replace_params(self, tasks: Sequence[StoredTask]) -> dict[str, Any]:
        """Return the parameters of ``replace``: the first record of each id, as arrays."""
        first: dict[str, StoredTask] = {}
        for t in tasks:
            first.setdefault(t.id, t)  # a second one of an id is skipped, as by ``insert``
        return self._st.insert_params(list(first.values()))

    def cancel_params(self, id: str, now: float) -> dict[str, Any]:
        """Return the parameters of ``cancel``."""
        st = self._st
        return {"id": id, "now": now, "change": st.change_channel, "cancel": st.cancel_channel}

    @staticmethod
    def prune_params(
        queue: str | None, before: Mapping[Status, float], limit: int, workers_before: float
    ) -> dict[str, Any]:
        """Return the parameters of ``prune`` (only final statuses are pruned)."""
        cutoffs = {s.value: before.get(s) for s in FINAL}
        known = [c for c in cutoffs.values() if c is not None]
        return {
            **cutoffs,
            "queue": queue,
            "latest": max(known, default=float("-inf")),
            "limit": max(0, limit),
            "workers_before": workers_before,
        }

    @staticmethod
    def worker_params(worker: WorkerRecord, now: float) -> dict[str, Any]:
        """Return the parameters of ``register_worker``."""
        return {
            "name": worker.name,
            "host": worker.host,
            "pid": worker.pid,
            "queue": worker.queue,
            "concurrency": worker.concurrency,
            "running": worker.running,
            "started_at": worker.started_at,
            "now": now,
        }
