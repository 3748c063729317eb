"""The in-memory backend: a driver like any other, and the reference model.

Time comes from the Trio clock, so tests run on ``autojump_clock``: a task
delayed by an hour runs after an hour of virtual time, instantly.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._backend import Backend
from .._codec import Codec
from .._driver import CANCEL_REQUESTED, Extended, Outcome, StoredTask, apply_outcome
from .._flow._resume import RetryKind
from .._registry import BackendSpec
from .._task import Status
from ._memory_admin import MemoryAdministration
from ._memory_flows import MemoryFlows
from ._memory_schedules import MemorySchedules

__all__ = ["MemoryBackend", "MemoryDriver"]

_READY = (Status.PENDING, Status.FAILED)
_LEASED = (Status.QUEUED, Status.RUNNING)


def _copy(t: StoredTask) -> StoredTask:
    # Field by field on purpose: on the claim path this is about 5x faster than
    # dataclasses.replace or copy.copy. Keep it in step with StoredTask's fields.
    return StoredTask(
        t.id,
        t.queue,
        t.payload,
        t.status,
        t.attempts,
        t.max_attempts,
        t.run_at,
        t.priority,
        dict(t.meta),
        t.last_error,
        t.result,
        t.created_at,
        t.finished_at,
        t.lease_token,
        t.lease_expires_at,
        t.traceback,
        t.started_at,
        t.worker,
        t.progress,
        t.snoozes,
        t.cancel_requested,
    )


class _Queue:
    __slots__ = ("delayed", "ready", "wake")

    def __init__(self) -> None:
        self.ready: list[tuple[int, float, str]] = []  # (-priority, run_at, id)
        self.delayed: list[tuple[float, str]] = []  # (run_at, id)
        self.wake = trio.Event()


class MemoryDriver(MemoryFlows, MemoryAdministration, MemorySchedules):
    """A storage driver that keeps tasks in dicts and heaps, on the Trio clock.

    Nothing is durable: the tasks live as long as the driver object.
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        # The run's clock, bound once: ``trio.current_time()`` looks it up on
        # every call, and the consumer reads the clock once per task.
        self._trio_time = trio.lowlevel.current_clock().current_time
        self._epoch = time.time() - self._trio_time()
        self._tasks: dict[str, StoredTask] = {}
        #: The ids sorted (for listings), as of ``_sorted_at`` inserts; deleted
        #: ids stay in it until the next insert (a listing skips them).
        self._sorted: list[str] = []
        self._sorted_at = self._inserts = 0
        self._queues: dict[str, _Queue] = {}
        self._leased: set[str] = set()
        self._init_administration()

    def now(self) -> float:
        """Return the Trio clock shifted to POSIX seconds (or the ``clock`` given)."""
        if self._clock is not None:
            return self._clock()
        return self._epoch + self._trio_time()

    def _q(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue()
        return q

    def _schedule(self, t: StoredTask, now: float) -> None:
        q = self._q(t.queue)
        if t.run_at <= now:
            heapq.heappush(q.ready, (-t.priority, t.run_at, t.id))
        else:
            heapq.heappush(q.delayed, (t.run_at, t.id))
        if not q.wake.is_set():
            q.wake.set()

    def _unlease(self, t: StoredTask) -> None:
        t.lease_token = None
        t.lease_expires_at = None
        self._leased.discard(t.id)

    def _held(self, id: str, token: str) -> StoredTask | None:
        t = self._tasks.get(id)
        if t is None or t.lease_token != token or t.status not in _LEASED:
            return None
        return t

    async def insert(self, tasks: Sequence[StoredTask]) -> int:
        """Store new tasks (taking ownership of the records); existing ids are skipped."""
        now = self.now()
        n = 0
        for t in tasks:
            if t.id in self._tasks:
                continue
            if not t.created_at:
                t.created_at = now
            self._tasks[t.id] = t
            self._schedule(t, now)
            n += 1
        self._inserts += 1
        return n

    async def replace(self, tasks: Sequence[StoredTask]) -> int:
        """Store tasks, replacing stored final ones of the same id; others are skipped."""
        for t in tasks:
            old = self._tasks.get(t.id)
            if old is not None and old.status.is_final:
                del self._tasks[t.id]
        return await self.insert(tasks)

    async def queues_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        """Return the queue and status of each stored task among ``ids``."""
        tasks = self._tasks
        return {id: (t.queue, t.status) for id in ids if (t := tasks.get(id)) is not None}

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks by priority, run_at, id (none from a paused queue)."""
        q = self._queues.get(queue)
        if q is None or queue in self._paused:
            return []
        now = self.now()
        ready, tasks = q.ready, self._tasks
        while q.delayed and q.delayed[0][0] <= now:
            run_at, id = heapq.heappop(q.delayed)
            t = tasks.get(id)
            if t is not None and t.status in _READY and t.run_at == run_at:
                heapq.heappush(ready, (-t.priority, run_at, id))
        out: list[StoredTask] = []
        expires = now + lease_seconds
        while ready and len(out) < limit:
            neg_prio, run_at, id = heapq.heappop(ready)
            t = tasks.get(id)
            if t is None or t.status not in _READY or t.run_at != run_at or t.priority != -neg_prio:
                continue  # a stale heap entry
            t.status = Status.QUEUED
            t.attempts += 1
            t.lease_token = token
            t.lease_expires_at = expires
            t.worker = worker or None
            self._leased.add(id)
            out.append(_copy(t))
        if not ready and not q.delayed and q.wake.is_set():
            q.wake = trio.Event()
        return out

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING, ``started_at`` now."""
        now = self.now()
        for id in ids:
            t = self._held(id, token)
            if t is not None and t.status is Status.QUEUED:
                t.status = Status.RUNNING
                t.started_at = now
                self._changed()

    async def extend(
        self,
        ids: Sequence[str],
        token: str,
        lease_seconds: float,
        progress: Mapping[str, str] | None = None,
    ) -> Extended:
        """Extend the leases still held (storing their progress); say which must stop."""
        expires = self.now() + lease_seconds
        out = Extended([])
        for id in ids:
            t = self._held(id, token)
            if t is not None:
                t.lease_expires_at = expires
                out.held.append(id)
                if t.cancel_requested:
                    out.cancel.append(id)
                if progress and (p := progress.get(id)) is not None:
                    t.progress = p
                    self._changed()
        return out

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Apply outcomes whose lease is still held (compare-and-set)."""
        now = self.now()
        applied = []
        for o in outcomes:
            t = self._held(o.id, token)
            if t is None:
                continue
            self._leased.discard(t.id)
            apply_outcome(t, o, now)
            if t.status in _READY:
                self._schedule(t, now)
            elif t.status is not Status.DONE:
                self._flow_ended(t, now)
            applied.append(o.id)
        if applied:
            self._changed()
        return applied

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back as PENDING, uncounting their attempt."""
        now = self.now()
        n = 0
        for id in ids:
            t = self._held(id, token)
            if t is None:
                continue
            self._unlease(t)
            if t.cancel_requested:
                self._end_cancelled(t, now)
            else:
                t.status = Status.PENDING
                t.attempts = max(0, t.attempts - 1)
                self._schedule(t, now)
            n += 1
        if n:
            self._changed()
        return n

    async def rescue(self, queue: str | None) -> int:
        """Recover expired leases: KILLED when out of attempts, else FAILED now."""
        now = self.now()
        n = 0
        for id in sorted(self._leased):
            t = self._tasks[id]
            if queue is not None and t.queue != queue:
                continue
            if t.lease_expires_at is None or t.lease_expires_at > now:
                continue
            self._unlease(t)
            if t.cancel_requested:
                self._end_cancelled(t, now)
            elif t.attempts >= t.max_attempts:
                t.status = Status.KILLED
                t.last_error = f"lease expired on attempt {t.attempts} of {t.max_attempts}"
                t.finished_at = now
                self._flow_ended(t, now)
            else:
                t.status = Status.FAILED
                t.last_error = f"lease expired on attempt {t.attempts}"
                t.run_at = now
                self._schedule(t, now)
            n += 1
        if n:
            self._changed()
        return n

    def _end_cancelled(self, t: StoredTask, now: float) -> None:
        t.status = Status.CANCELLED
        t.last_error = CANCEL_REQUESTED
        t.finished_at = now
        t.cancel_requested = False
        self._flow_ended(t, now)

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest run_at of a waiting task of ``queue`` (None while it is paused)."""
        q = self._queues.get(queue)
        if q is None or queue in self._paused:
            return None
        tasks = self._tasks

        def valid(run_at: float, id: str) -> bool:
            t = tasks.get(id)
            return t is not None and t.status in _READY and t.run_at == run_at

        # Ready entries are ordered by priority, not time: look at each (the
        # claimer only asks when a claim found nothing, so few remain).
        ready = [run_at for _, run_at, id in q.ready if valid(run_at, id)]
        if not ready:
            q.ready.clear()
        while q.delayed and not valid(*q.delayed[0]):
            heapq.heappop(q.delayed)
        if q.delayed:
            ready.append(q.delayed[0][0])
        return min(ready, default=None)

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Wait until a task is inserted or rescheduled on ``queue``, or ``max_wait`` seconds."""
        q = self._q(queue)
        with trio.move_on_after(max_wait):
            await q.wake.wait()
        if q.wake.is_set():
            q.wake = trio.Event()

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Count tasks per queue and status."""
        out: dict[str, dict[Status, int]] = {}
        for t in self._tasks.values():
            if queue is not None and t.queue != queue:
                continue
            per = out.setdefault(t.queue, {})
            per[t.status] = per.get(t.status, 0) + 1
        return out

    async def list_tasks(
        self,
        *,
        queue: str | None,
        status: Status | None,
        limit: int,
        offset: int,
        before: str | None = None,
    ) -> list[StoredTask]:
        """List tasks, newest id first (ids below ``before`` when given)."""
        if self._sorted_at != self._inserts:
            self._sorted, self._sorted_at = sorted(self._tasks), self._inserts
        ids, tasks = self._sorted, self._tasks
        # Down from ``before`` like an index: a page reads only what it passes.
        i = len(ids) if before is None else bisect.bisect_left(ids, before)
        skip, out = max(0, offset), list[StoredTask]()
        while i > 0 and len(out) < limit:
            i -= 1
            t = tasks.get(ids[i])
            if t is None or (queue is not None and t.queue != queue):
                continue
            if status is not None and t.status is not status:
                continue
            if skip:
                skip -= 1
            else:
                out.append(_copy(t))
        return out

    async def get(self, id: str) -> StoredTask | None:
        """Return a copy of one task, or None."""
        t = self._tasks.get(id)
        return None if t is None else _copy(t)

    async def get_many(self, ids: Sequence[str]) -> list[StoredTask]:
        """Return copies of the stored tasks among ``ids``."""
        tasks = self._tasks
        return [_copy(t) for id in ids if (t := tasks.get(id)) is not None]

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed.

        A run record, or a node of an ended run, resumes its run instead (``FlowDriver``).
        """
        t = self._tasks.get(id)
        if t is None:
            return False
        kind = self._retry_kind(t)
        if kind is RetryKind.RUN:
            return self._resume(t)
        if kind is RetryKind.NO:
            return False
        now = self.now()
        t.status = Status.PENDING
        t.run_at = now
        t.finished_at = None
        t.max_attempts = max(t.max_attempts, t.attempts + 1)
        self._schedule(t, now)
        self._changed()
        return True

    async def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task at once; flag a QUEUED or RUNNING one."""
        t = self._tasks.get(id)
        if t is None or t.status.is_final:
            return False
        if t.meta and self._cancel_run(t):
            return True
        if t.status in _LEASED:
            t.cancel_requested = True
            self._signal_cancel()
        else:
            t.status = Status.CANCELLED
            t.finished_at = self.now()
            self._flow_ended(t, t.finished_at)
        self._changed()
        return True

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<MemoryDriver tasks={len(self._tasks)} leased={len(self._leased)}>"


class MemoryBackend(Backend):
    """The in-memory backend (``memory://``): fast, not durable, on the Trio clock.

    Example::

        async with MemoryBackend.open() as backend:
            await backend.push("hello")

    Several workers may share one ``MemoryBackend`` object; two ``open()``
    calls make two independent stores.
    """

    @classmethod
    @asynccontextmanager
    async def open(
        cls, *, queue: str = "default", codec: Codec | None = None, **options: Any
    ) -> AsyncIterator[MemoryBackend]:
        """Open a fresh in-memory store.

        Args:
          queue: The queue pushed to and claimed from (default ``"default"``).
          codec: The codec (default ``JsonCodec()``).
          **options: ``clock`` (a function returning POSIX seconds, for tests
            that move time by hand) and the bridge options (``push_buffer``,
            ``insert_batch``).
        """
        clock = options.pop("clock", None)
        backend = cls(MemoryDriver(clock=clock), queue=queue, codec=codec, **options)
        async with backend.running():
            yield backend


@asynccontextmanager
async def _open_url(url: str, **options: Any) -> AsyncIterator[MemoryBackend]:
    async with MemoryBackend.open(**options) as backend:
        yield backend


#: The backend table's row for ``memory://``.
BACKEND = BackendSpec(name="memory", schemes=("memory",), open=_open_url, example="memory://")
