"""The PostgreSQL driver's workflow operations: ``advance`` and the run cancel.

``PostgresDriver`` inherits them. ``advance`` is one call of the function
``flow_advance`` and the end rule a trigger, both of migration 5
(``_pg_schema``). See ``FlowDriver`` for the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from psycopg import sql

from .._driver import StoredTask
from .._flow._records import RUN_CANCELLED, Transition
from ._pg_schema import check_identifier
from ._pg_statements import PAYLOAD

if TYPE_CHECKING:
    from ._pg_statements import Statements

__all__ = ["PostgresFlows"]


def _task(t: StoredTask) -> dict[str, Any]:
    return {
        "id": str(t.id),
        "queue": t.queue,
        "payload": bytes(t.payload).hex(),
        "max_attempts": t.max_attempts,
        "run_at": float(t.run_at),
        "priority": t.priority,
        "meta": t.meta,
    }


def _step(s: Transition) -> dict[str, Any]:
    return {
        "id": str(s.id),
        "result": None if s.result is None else bytes(s.result).hex(),
        "error": s.error,
        "started_at": s.started_at,
        "progress": s.progress,
        "run": s.run,
        "finish": s.finish,
        "spawn": [_task(t) for t in s.spawn],
        "joins": [{"task": _task(j.task), "inputs": list(j.inputs)} for j in s.joins],
    }


class PostgresFlows:
    """``advance`` and the run cancel of ``PostgresDriver``."""

    schema: str
    _sql: Statements

    if TYPE_CHECKING:

        def now(self) -> float: ...

        async def _work(self, query: Any, params: Any) -> list[Any]: ...

        async def _fetch(
            self, query: Any, params: Any, *, shield: bool, durable: bool = True
        ) -> list[Any]: ...

        def _signal_change(self) -> None: ...

        def _signal_cancel(self) -> None: ...

    def _flow_statements(self) -> tuple[str, str]:
        cached: tuple[str, str] | None = self.__dict__.get("_flow_sql")
        if cached is None:
            s = sql.Identifier(check_identifier(self.schema))
            advance = sql.SQL(
                "SELECT {s}.flow_advance(%(steps)s::jsonb, %(token)s, %(now)s, "
                "%(channel)s, %(change)s)"
            ).format(s=s)
            cancel = sql.SQL(
                """WITH u AS (UPDATE {s}.tasks SET status = 'cancelled', finished_at = %(now)s,
                    cancel_requested = false, last_error = %(error)s
                WHERE id = ANY(%(runs)s::text[]) AND status = 'running'
                  AND meta ? 'trioqueue_run' AND meta->>'trioqueue_run' = id
                  AND NOT meta ? 'trioqueue_node'
                RETURNING id),
                e AS (SELECT {s}.flow_end_run(id, id, %(now)s, %(cancel)s) FROM u),
                ids AS (SELECT json_agg(id) AS j FROM u),
                c AS (SELECT pg_notify(%(change)s, """
                + PAYLOAD
                + """) FROM ids WHERE j IS NOT NULL)
                SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM e),
                       (SELECT count(*) FROM c)"""
            ).format(s=s)
            cached = (advance.as_string(None), cancel.as_string(None))
            self.__dict__["_flow_sql"] = cached
        return cached

    async def advance(self, steps: Sequence[Transition], token: str) -> list[str]:
        """Settle workflow nodes DONE and create their successors: one call of ``flow_advance``."""
        if not steps:
            return []
        params = {
            "steps": msgspec.json.encode([_step(s) for s in steps]).decode(),
            "token": token,
            "now": self.now(),
            "channel": self._sql.channel,
            "change": self._sql.change_channel,
        }
        rows = await self._work(self._flow_statements()[0], params)
        done = set(rows[0][0] or ())
        applied = [s.id for s in steps if s.id in done]
        if applied:
            self._signal_change()
        return applied

    async def _cancel_runs(self, ids: Sequence[str]) -> int:
        """Cancel the RUNNING run records among ``ids`` with their tasks; returns how many."""
        params = {
            "runs": list(ids),
            "now": self.now(),
            "error": RUN_CANCELLED,
            "cancel": self._sql.cancel_channel,
            "change": self._sql.change_channel,
        }
        rows = await self._fetch(self._flow_statements()[1], params, shield=True)
        n = int(rows[0][0])
        if n:
            self._signal_cancel()
            self._signal_change()
        return n

    async def cancel(self, id: str) -> bool:
        """Cancel a task (see ``Driver.cancel``); a RUNNING run record ends with its tasks."""
        if await self._cancel_runs([id]):
            return True
        plain: bool = await super().cancel(id)  # type: ignore[misc]
        return plain

    async def cancel_many(self, ids: Sequence[str]) -> int:
        """Cancel the tasks among ``ids`` as ``cancel`` does, in two statements."""
        if not ids:
            return 0
        runs = await self._cancel_runs(ids)
        plain: int = await super().cancel_many(ids)  # type: ignore[misc]
        return runs + plain
