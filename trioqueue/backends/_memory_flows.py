"""The memory driver's workflow operations: ``advance``, the end rule, the run cancel and resume.

``MemoryDriver`` inherits them; see ``FlowDriver`` for the contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._driver import StoredTask, apply_outcome
from .._flow._records import (
    META_NODE,
    META_RUN,
    RUN_CANCELLED,
    RUN_ENDED,
    Transition,
    gathered,
    run_ended_error,
)
from .._flow._resume import RetryKind, is_record_of, retry_kind, run_of
from .._task import Status

__all__ = ["MemoryFlows"]

_LEASED = (Status.QUEUED, Status.RUNNING)
_RERUN = (Status.FAILED, Status.KILLED, Status.CANCELLED)


class MemoryFlows:
    """``advance``, the end rule, the run cancel and resume of ``MemoryDriver``."""

    _tasks: dict[str, StoredTask]
    _inserts: int
    _leased: set[str]

    if TYPE_CHECKING:

        def now(self) -> float: ...

        def _held(self, id: str, token: str) -> StoredTask | None: ...

        def _schedule(self, t: StoredTask, now: float) -> None: ...

        def _changed(self) -> None: ...

        def _signal_cancel(self) -> None: ...

    @property
    def _flow_joins(self) -> dict[str, int]:
        # The fan-in counters, by join task id.
        joins: dict[str, int] | None = self.__dict__.get("_joins")
        if joins is None:
            joins = self.__dict__["_joins"] = {}
        return joins

    def _put(self, t: StoredTask, now: float) -> None:
        if t.id in self._tasks:
            return
        if not t.created_at:
            t.created_at = now
        self._tasks[t.id] = t
        self._inserts += 1
        self._schedule(t, now)

    async def advance(self, steps: Sequence[Transition], token: str) -> list[str]:
        """Settle workflow nodes DONE and create their successors (see ``FlowDriver``)."""
        now = self.now()
        applied = []
        tasks, joins = self._tasks, self._flow_joins
        for s in steps:
            t = self._held(s.id, token)
            if t is None:
                continue
            self._leased.discard(t.id)
            apply_outcome(t, s, now)
            applied.append(s.id)
            if t.status is not Status.DONE:
                self._flow_ended(t, now)
                continue
            run = tasks.get(s.run)
            if run is None or run.status is not Status.RUNNING or run.cancel_requested:
                continue
            for new in s.spawn:
                self._put(new, now)
            for j in s.joins:
                left = joins[j.task.id] - 1 if j.task.id in joins else self._unarrived(j.inputs)
                if left > 0:
                    joins[j.task.id] = left
                    continue
                joins.pop(j.task.id, None)
                results = [r.result if (r := tasks.get(i)) is not None else None for i in j.inputs]
                j.task.payload = bytes(j.task.payload) + gathered(results)
                self._put(j.task, now)
            if s.finish:
                run.status = Status.DONE
                run.result = t.result
                run.finished_at = now
        if applied:
            self._changed()
        return applied

    def _unarrived(self, inputs: list[str]) -> int:
        # A join's first arrival (or the first after its run resumed): its
        # inputs not DONE yet, this node counting as DONE.
        tasks = self._tasks
        return sum(1 for i in inputs if (r := tasks.get(i)) is None or r.status is not Status.DONE)

    def _of_live_run(self, t: StoredTask) -> bool:
        """Whether ``t`` is a node of a run that is RUNNING (purge and delete leave it)."""
        of = run_of(t.id, t.meta) if t.meta else None
        if of is None or of[1]:
            return False
        run = self._tasks.get(of[0])
        return run is not None and run.status is Status.RUNNING

    def _retry_kind(self, t: StoredTask) -> RetryKind:
        of = run_of(t.id, t.meta) if t.meta else None
        run = None if of is None else self._tasks.get(of[0])
        if run is not None and not is_record_of(run.id, run.meta):
            run = None
        return retry_kind(t.id, t.status, t.meta, None if run is None else run.status)

    def _resume(self, t: StoredTask) -> bool:
        """Resume the run of ``t`` (see ``FlowDriver``); say whether it was resumed."""
        of = run_of(t.id, t.meta)
        assert of is not None
        run = self._tasks.get(of[0])
        if run is None:
            return False
        prefix = run.id + "/"
        mine = [
            n
            for n in self._tasks.values()
            if n.meta.get(META_RUN) == run.id and n.id.startswith(prefix)
        ]
        if any(n.status in _LEASED for n in mine):
            return False  # nodes its end flagged are still stopping
        again = [n for n in mine if n.status in _RERUN]
        if not again:
            return False
        now = self.now()
        run.status = Status.RUNNING
        run.finished_at = None
        run.cancel_requested = False
        for n in again:
            n.status = Status.PENDING
            n.run_at = max(n.run_at, now)
            n.finished_at = None
            n.cancel_requested = False
            n.max_attempts = max(n.max_attempts, n.attempts + 1)
            self._schedule(n, now)
        self._changed()
        return True

    def _flow_ended(self, t: StoredTask, now: float) -> None:
        """Apply the end rule if ``t``, just made KILLED or CANCELLED, is a workflow node."""
        node = t.meta.get(META_NODE) if t.meta else None
        if node is None or t.status not in (Status.KILLED, Status.CANCELLED):
            return
        run = self._tasks.get(str(t.meta.get(META_RUN)))
        if run is None or run.status is not Status.RUNNING:
            return
        run.status = t.status
        run.last_error = run_ended_error(str(node), t.status.value, t.last_error)
        run.finished_at = now
        run.cancel_requested = False
        self._end_run(run.id, now)

    def _cancel_run(self, t: StoredTask) -> bool:
        """Cancel ``t`` if it is a RUNNING run record (the run cancel); say whether it was."""
        if t.meta.get(META_RUN) != t.id or META_NODE in t.meta or t.status is not Status.RUNNING:
            return False
        now = self.now()
        t.status = Status.CANCELLED
        t.last_error = RUN_CANCELLED
        t.finished_at = now
        t.cancel_requested = False
        self._end_run(t.id, now)
        self._changed()
        return True

    def _end_run(self, run: str, now: float) -> None:
        # The run's other unfinished tasks are cancelled, its counters dropped.
        prefix = run + "/"
        signal = False
        for t in self._tasks.values():
            if t.status.is_final or t.meta.get(META_RUN) != run or not t.id.startswith(prefix):
                continue
            if t.status in _LEASED:
                t.cancel_requested = True
                signal = True
            else:
                t.status = Status.CANCELLED
                t.last_error = RUN_ENDED
                t.finished_at = now
        for id in [j for j in self._flow_joins if j.startswith(prefix)]:
            del self._flow_joins[id]
        if signal:
            self._signal_cancel()
