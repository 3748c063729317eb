"""The SQLite driver's workflow operations: ``advance``, the run cancel and ``retry``.

``SqliteDriver`` inherits them; the end rule is a trigger of migration 5
(``_sqlite_schema``). ``retry`` is here because a retry of a run's task may
resume the run. See ``FlowDriver`` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._flow._records import Transition, gathered
from .._flow._resume import RetryKind, is_record_of, retry_kind, run_of
from .._task import Status
from . import _sqlite_schema as schema
from . import _sqlite_statements as sql
from ._columns import meta_or_none, status_of

__all__ = ["SqliteFlows"]

T = TypeVar("T")

_RUN = schema.RUN_OF_META
_RUN_STATUS = "SELECT status, cancel_requested FROM trioqueue_tasks WHERE id = ?"
_ARRIVE = (
    "UPDATE trioqueue_flow_joins SET remaining = remaining - 1 WHERE id = ? RETURNING remaining"
)
_FIRST = "INSERT INTO trioqueue_flow_joins (id, run, remaining) VALUES (?, ?, ?)"
# A join's inputs that are not DONE (a missing one counts): its first arrival's count.
_UNARRIVED = """
SELECT count(*) FROM json_each(?) AS x LEFT JOIN trioqueue_tasks t ON t.id = x.value
WHERE t.status IS NOT 'done'
"""
_RESULTS = "SELECT id, result FROM trioqueue_tasks WHERE id IN (SELECT value FROM json_each(?))"
_FINISH = """
UPDATE trioqueue_tasks SET status = 'done', finished_at = :now,
    result = (SELECT result FROM trioqueue_tasks WHERE id = :node)
WHERE id = :run AND status = 'running'
"""
_CANCEL_RUN = f"""
UPDATE trioqueue_tasks SET status = 'cancelled', finished_at = :now, cancel_requested = 0,
    last_error = 'Cancelled: the run was cancelled'
WHERE id = :run AND status = 'running' AND {_RUN} = id
    AND CASE WHEN json_valid(meta) THEN json_extract(meta, '$.trioqueue_node') END IS NULL
RETURNING id
"""
# The RUNNING tasks among some ids (JSON) that may be run records (``_CANCEL_RUN`` tells).
_RUNS_AMONG = f"""
SELECT id FROM trioqueue_tasks
WHERE id IN (SELECT value FROM json_each(?)) AND status = 'running' AND {_RUN} = id
"""
# The end rule's cascade (the trigger's second statement), for the run cancel.
_CASCADE = f"""
UPDATE trioqueue_tasks SET
    status = CASE WHEN status IN ('queued', 'running') THEN status ELSE 'cancelled' END,
    cancel_requested = status IN ('queued', 'running'),
    last_error = CASE WHEN status IN ('queued', 'running') THEN last_error
        ELSE 'Cancelled: its run ended' END,
    finished_at = CASE WHEN status IN ('queued', 'running') THEN finished_at ELSE :now END
WHERE {schema.RUN_SEARCH} = :run AND id <> :run AND status NOT IN ('done', 'killed', 'cancelled')
"""
_DROP_JOINS = "DELETE FROM trioqueue_flow_joins WHERE run = :run"


_READ = "SELECT status, meta FROM trioqueue_tasks WHERE id = ?"
_BUSY = f"""
SELECT 1 FROM trioqueue_tasks WHERE {schema.RUN_SEARCH} = :run AND id <> :run
    AND status IN ('queued', 'running') LIMIT 1
"""
_RERUN = f"""
UPDATE trioqueue_tasks SET status = 'pending', run_at = max(run_at, :now), finished_at = NULL,
    cancel_requested = 0, max_attempts = max(max_attempts, attempts + 1)
WHERE {schema.RUN_SEARCH} = :run AND id <> :run AND status IN ('failed', 'killed', 'cancelled')
RETURNING queue
"""
_RESUME = """
UPDATE trioqueue_tasks SET status = 'running', finished_at = NULL, cancel_requested = 0
WHERE id = :run AND status IN ('killed', 'cancelled')
"""


def retry_in(conn: schema.Conn, id: str, now: float) -> list[str] | None:
    """Retry the task ``id`` in the open transaction: the queues woken, or None if refused.

    A plain retry (FAILED or KILLED: PENDING now, one more attempt), or the
    resume of its run (``FlowDriver``), as ``retry_kind`` decides.
    """
    row = conn.execute(_READ, (id,)).fetchone()
    if row is None:
        return None
    meta = meta_or_none(row[1])
    of = run_of(id, meta)
    run_status = None
    if of is not None and (r := conn.execute(_READ, (of[0],)).fetchone()) is not None:
        if is_record_of(of[0], meta_or_none(r[1])):
            run_status = status_of(r[0])
    kind = retry_kind(id, status_of(row[0]), meta, run_status)
    if kind is RetryKind.TASK:
        return [q for (q,) in conn.execute(sql.RETRY, (now, id)).fetchall()] or None
    if kind is RetryKind.NO or of is None:
        return None
    params = {"run": of[0], "now": now}
    if conn.execute(_BUSY, params).fetchone() is not None:
        return None  # nodes its end flagged are still stopping
    queues = [q for (q,) in conn.execute(_RERUN, params).fetchall()]
    if not queues:
        return None  # nothing of the run would run again
    conn.execute(_RESUME, params)
    return queues


class SqliteFlows:
    """``advance``, the run cancel and ``retry`` of ``SqliteDriver``."""

    if TYPE_CHECKING:
        _waker: Any

        def now(self) -> float: ...

        def _signal_cancel(self) -> None: ...

        async def _tx(
            self, fn: Callable[..., T], *args: Any, durable: bool = False, rows: int = 0
        ) -> T: ...

    async def advance(self, steps: Sequence[Transition], token: str) -> list[str]:
        """Settle workflow nodes DONE and create their successors, in one transaction."""
        if not steps:
            return []
        now = self.now()

        def run(conn: schema.Conn) -> list[tuple[str, str]]:
            held = dict(conn.execute(sql.SETTLE_HELD, (sql.ids_json(s.id for s in steps), token)))
            applied: list[tuple[str, str]] = []
            for s in steps:
                if s.id not in held:
                    continue
                sql.count_settled(
                    conn, conn.execute(sql.SETTLE_ONE, _settle_params(s, token, now)).fetchall()
                )
                applied.append((s.id, held[s.id]))
                _follow(conn, s, now)
            return applied

        applied = await self._tx(run, rows=len(steps))
        if applied:
            self._waker.changed()
            self._waker.wake({t.queue for s in steps for t in s.spawn} | {q for _, q in applied})
        return [id for id, _ in applied]

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed.

        A run record, or a node of an ended run, resumes its run instead (``FlowDriver``).
        """
        now = self.now()
        queues = await self._tx(lambda c: retry_in(c, id, now), durable=True)
        if queues is None:
            return False
        self._waker.changed()
        self._waker.wake(queues)
        return True

    async def cancel(self, id: str) -> bool:
        """Cancel a task (see ``Driver.cancel``); a RUNNING run record ends with its tasks."""
        params = {"run": id, "now": self.now()}

        def run(conn: schema.Conn) -> bool:
            if conn.execute(_CANCEL_RUN, params).fetchone() is None:
                return False
            conn.execute(_CASCADE, params)
            conn.execute(_DROP_JOINS, params)
            conn.execute(sql.SIGNAL_CANCEL)  # the holders of its flagged tasks
            return True

        if await self._tx(run, durable=True):
            self._signal_cancel()
            self._waker.changed()
            return True
        plain: bool = await super().cancel(id)  # type: ignore[misc]
        return plain

    def _cancel_in(self, conn: schema.Conn, ids: Sequence[str], now: float) -> tuple[int, bool]:
        """``cancel_many``'s transaction: a RUNNING run record ends with its tasks."""
        runs = 0
        for (id,) in conn.execute(_RUNS_AMONG, (sql.ids_json(ids),)).fetchall():
            params = {"run": id, "now": now}
            if conn.execute(_CANCEL_RUN, params).fetchone() is not None:
                conn.execute(_CASCADE, params)
                conn.execute(_DROP_JOINS, params)
                runs += 1
        # The run records just cancelled are final: the plain cancel skips them.
        n, flagged = super()._cancel_in(conn, ids, now)  # type: ignore[misc]
        return runs + n, bool(runs) or flagged


def _settle_params(s: Transition, token: str, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "token": token,
        "status": Status.DONE.value,
        "result": s.result,
        "error": s.error,
        "traceback": None,
        "now": now,
        "delay": 0.0,
        "started_at": s.started_at,
        "progress": s.progress,
    }


def _follow(conn: schema.Conn, s: Transition, now: float) -> None:
    # What follows a node just settled: only if it is DONE and its run RUNNING.
    row = conn.execute(_RUN_STATUS, (s.id,)).fetchone()
    if row is None or row[0] != Status.DONE.value:
        return  # a cancellation was requested: the end rule ended the run
    run = conn.execute(_RUN_STATUS, (s.run,)).fetchone()
    if run is None or run[0] != Status.RUNNING.value or run[1]:
        return
    new = list(s.spawn)
    for j in s.joins:
        row = conn.execute(_ARRIVE, (j.task.id,)).fetchone()
        if row is None:  # the first arrival (or the first since the run resumed)
            (left,) = conn.execute(_UNARRIVED, (sql.ids_json(j.inputs),)).fetchone()
            if left > 0:
                conn.execute(_FIRST, (j.task.id, s.run, left))
                continue
        elif row[0] > 0:
            continue
        conn.execute("DELETE FROM trioqueue_flow_joins WHERE id = ?", (j.task.id,))
        results = dict(conn.execute(_RESULTS, (sql.ids_json(j.inputs),)).fetchall())
        j.task.payload = bytes(j.task.payload) + gathered([results.get(i) for i in j.inputs])
        new.append(j.task)
    if new:
        for t in new:
            if not t.created_at:
                t.created_at = now
        sql.insert_tasks(conn, new)
    if s.finish:
        conn.execute(_FINISH, {"now": now, "node": s.id, "run": s.run})
