"""The memory driver's lifecycle operations: change and cancel signals, retention,
paused queues and the workers' registry (``MemoryDriver`` inherits them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from .._driver import RetentionRule, StoredTask, WorkerRecord
from .._flow._resume import run_of
from .._task import Status

__all__ = ["MemoryAdministration"]

#: Statuses of tasks a worker holds: ``delete`` leaves them (cancel them first).
_CLAIMED = (Status.QUEUED, Status.RUNNING)


class MemoryAdministration:
    """Signals, pruning, pause and the workers' registry of ``MemoryDriver``."""

    _tasks: dict[str, StoredTask]

    if TYPE_CHECKING:

        def now(self) -> float: ...

        def _q(self, name: str) -> Any: ...

        def _of_live_run(self, t: StoredTask) -> bool: ...

        async def retry(self, id: str) -> bool: ...

        async def cancel(self, id: str) -> bool: ...

    def _init_administration(self) -> None:
        self._change = trio.Event()
        self._cancel = trio.Event()
        self._paused: set[str] = set()
        self._retention: dict[str, RetentionRule] = {}
        self._workers: dict[str, WorkerRecord] = {}

    def _changed(self) -> None:
        # Waiters re-read what they follow; a fresh event for the next change.
        self._change.set()
        self._change = trio.Event()

    def _signal_cancel(self) -> None:
        self._cancel.set()
        self._cancel = trio.Event()

    async def wait_for_change(self, max_wait: float) -> None:
        """Wait until a task changes status or progress, or ``max_wait`` seconds."""
        with trio.move_on_after(max_wait):
            await self._change.wait()

    async def wait_for_cancel(self, max_wait: float) -> None:
        """Wait until a cancellation is requested, or ``max_wait`` seconds."""
        with trio.move_on_after(max_wait):
            await self._cancel.wait()

    async def prune(
        self,
        queue: str | None,
        before: Mapping[Status, float],
        limit: int,
        workers_before: float,
    ) -> int:
        """Delete up to ``limit`` final tasks of ``queue`` finished before their status's cutoff.

        The nodes of a RUNNING workflow run are kept (its joins read their results).
        """
        gone = []
        for id, t in self._tasks.items():
            if queue is not None and t.queue != queue:
                continue
            cutoff = before.get(t.status)
            if (
                cutoff is not None
                and t.finished_at is not None
                and t.finished_at < cutoff
                and not self._of_live_run(t)
            ):
                gone.append(id)
                if len(gone) >= limit:
                    break
        for id in gone:
            del self._tasks[id]
        for name in [n for n, w in self._workers.items() if w.last_seen < workers_before]:
            del self._workers[name]
        return len(gone)

    async def purge(self, older_than: float) -> int:
        """Delete finished tasks finished before ``older_than`` (not the nodes of a RUNNING run)."""
        gone = [
            id
            for id, t in self._tasks.items()
            if t.status.is_final
            and t.finished_at is not None
            and t.finished_at < older_than
            and not self._of_live_run(t)
        ]
        for id in gone:
            del self._tasks[id]
        return len(gone)

    async def retry_many(self, ids: Sequence[str]) -> int:
        """Retry the FAILED and KILLED tasks among ``ids`` as ``retry`` does; returns how many.

        The tasks of workflow runs are left out (``retry`` by id resumes a run).
        """
        n = 0
        for id in ids:
            t = self._tasks.get(id)
            if t is not None and run_of(t.id, t.meta) is None:
                n += await self.retry(id)
        return n

    async def cancel_many(self, ids: Sequence[str]) -> int:
        """Cancel the tasks among ``ids`` as ``cancel`` does; returns how many."""
        n = 0
        for id in ids:
            n += await self.cancel(id)
        return n

    async def delete(self, ids: Sequence[str]) -> int:
        """Delete the tasks among ``ids`` that are not QUEUED or RUNNING; returns how many.

        The nodes of a RUNNING workflow run are kept (its joins read their results).
        """
        gone = [
            id
            for id in dict.fromkeys(ids)
            if (t := self._tasks.get(id)) is not None
            and t.status not in _CLAIMED
            and not self._of_live_run(t)
        ]
        for id in gone:
            del self._tasks[id]
        if gone:
            self._changed()
        return len(gone)

    async def finished_histogram(self, since: float, step: float) -> list[tuple[int, Status, int]]:
        """Count tasks finished since ``since`` per ``step``-second bucket and final status."""
        counts: dict[tuple[int, Status], int] = {}
        for t in self._tasks.values():
            if t.status.is_final and t.finished_at is not None and t.finished_at >= since:
                key = (int((t.finished_at - since) // step), t.status)
                counts[key] = counts.get(key, 0) + 1
        return [(b, s, n) for (b, s), n in sorted(counts.items())]

    async def pause(self, queue: str) -> None:
        """Pause ``queue``: claims give nothing until ``resume``."""
        self._paused.add(queue)

    async def resume(self, queue: str) -> None:
        """Resume ``queue`` and wake its consumers."""
        self._paused.discard(queue)
        wake = self._q(queue).wake
        if not wake.is_set():
            wake.set()

    async def paused(self) -> list[str]:
        """Return the paused queues, sorted."""
        return sorted(self._paused)

    async def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule."""
        self._retention[queue] = rule

    async def clear_retention(self, queue: str) -> None:
        """Forget ``queue``'s stored rule."""
        self._retention.pop(queue, None)

    async def retentions(self, queues: Sequence[str] | None) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues`` (None: every queue), by queue."""
        if queues is None:
            return dict(sorted(self._retention.items()))
        return {q: r for q in queues if (r := self._retention.get(q)) is not None}

    async def register_worker(self, worker: WorkerRecord) -> None:
        """Insert or refresh a worker's entry, ``last_seen`` now."""
        self._workers[worker.name] = dataclasses.replace(worker, last_seen=self.now())

    async def remove_worker(self, name: str) -> None:
        """Delete a worker's entry."""
        self._workers.pop(name, None)

    async def workers(self, seen_after: float) -> list[WorkerRecord]:
        """Return the entries seen after ``seen_after``, by name."""
        return [
            dataclasses.replace(w)
            for _, w in sorted(self._workers.items())
            if w.last_seen > seen_after
        ]
