"""The SQLite driver's workflow operations: ``advance`` and the run cancel.

``SqliteDriver`` inherits them; the end rule is a trigger of migration 4
(``_sqlite_schema``). See ``FlowDriver`` for the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._flow._records import Transition, gathered
from .._task import Status
from . import _sqlite_schema as schema
from . import _sqlite_statements as sql

__all__ = ["SqliteFlows"]

T = TypeVar("T")

_RUN = schema.RUN_OF_META
_RUN_STATUS = "SELECT status, cancel_requested FROM trioqueue_tasks WHERE id = ?"
_ARRIVE = """
INSERT INTO trioqueue_flow_joins (id, run, remaining) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET remaining = remaining - 1
RETURNING remaining
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


class SqliteFlows:
    """``advance`` and the run cancel of ``SqliteDriver``."""

    if TYPE_CHECKING:
        _waker: Any
        _cancel: trio.Event

        def now(self) -> float: ...

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
                conn.execute(sql.SETTLE, _settle_params(s, token, now))
                applied.append((s.id, held[s.id]))
                _follow(conn, s, now)
            return applied

        applied = await self._tx(run, rows=len(steps))
        if applied:
            self._waker.changed()
            self._waker.wake({t.queue for s in steps for t in s.spawn} | {q for _, q in applied})
        return [id for id, _ in applied]

    async def cancel(self, id: str) -> bool:
        """Cancel a task (see ``Driver.cancel``); a RUNNING run record ends with its tasks."""
        params = {"run": id, "now": self.now()}

        def run(conn: schema.Conn) -> bool:
            if conn.execute(_CANCEL_RUN, params).fetchone() is None:
                return False
            conn.execute(_CASCADE, params)
            conn.execute(_DROP_JOINS, params)
            return True

        if await self._tx(run, durable=True):
            self._cancel.set()
            self._cancel = trio.Event()
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
        (left,) = conn.execute(_ARRIVE, (j.task.id, s.run, len(j.inputs) - 1)).fetchone()
        if left > 0:
            continue
        conn.execute("DELETE FROM trioqueue_flow_joins WHERE id = ?", (j.task.id,))
        results = dict(conn.execute(_RESULTS, (sql.ids_json(j.inputs),)).fetchall())
        j.task.payload = bytes(j.task.payload) + gathered([results.get(i) for i in j.inputs])
        new.append(j.task)
    if new:
        for t in new:
            if not t.created_at:
                t.created_at = now
        statement, rows = sql.insert_rows(new)
        conn.executemany(statement, rows)
    if s.finish:
        conn.execute(_FINISH, {"now": now, "node": s.id, "run": s.run})
