"""Toy drivers for the conformance and crash tests.

- ``FileDriver``: a whole store in one JSON file, rewritten atomically under
  an ``fcntl`` lock, so several processes share it; simple and slow on purpose.
- Broken drivers, each breaking one promise: ``ForgetfulReleaseDriver`` (does
  not give back tasks that never started, so shutdown strands its prefetch),
  ``UncheckedSettleDriver`` (settles without checking the lease),
  ``LosingRescueDriver`` and ``LosingRescueFileDriver`` (lose a task on rescue),
  ``CancelsAnythingDriver`` (cancels final tasks too), ``RetriesOnlyKilledDriver``
  (refuses to retry a FAILED task), ``IgnoresCancelOnSettleDriver`` (a task
  whose cancellation was requested ends as its outcome says, not CANCELLED)
  ``DeafToChangesDriver`` (``wait_for_change`` always waits it out),
  ``ImpatientDriver`` (``wait_for_change`` never waits) and
  ``RewindingScheduleDriver`` (a schedule's older last tick overwrites a later one).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import trio

from trioqueue import Backend, Outcome, Status, StoredTask
from trioqueue._driver import (
    CANCEL_REQUESTED,
    Extended,
    RetentionRule,
    WorkerRecord,
    apply_outcome,
)
from trioqueue._flow._records import (
    META_NODE,
    META_RUN,
    RUN_CANCELLED,
    RUN_ENDED,
    Transition,
    gathered,
    run_ended_error,
)
from trioqueue.backends.memory import MemoryDriver
from trioqueue.drivers import (
    RetryKind,
    ScheduleRecord,
    is_record_of,
    merge_schedule,
    retry_kind,
    run_of,
)

Clock = Callable[[], float]

_READY = (Status.PENDING, Status.FAILED)
_LEASED = (Status.QUEUED, Status.RUNNING)
_FINAL = (Status.DONE, Status.KILLED, Status.CANCELLED)


# -- broken memory drivers --


class ForgetfulReleaseDriver(MemoryDriver):
    """Releases only RUNNING tasks: prefetched (QUEUED) ones stay leased at shutdown."""

    async def release(self, ids: Sequence[str], token: str) -> int:
        running = []
        for id in ids:
            t = self._tasks.get(id)
            if t is not None and t.status is Status.RUNNING:
                running.append(id)
        await super().release(running, token)
        return len(ids)


class UncheckedSettleDriver(MemoryDriver):
    """Settles any leased task whatever the token: a stale worker wins."""

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        out = []
        for o in outcomes:
            t = self._tasks.get(o.id)
            if t is not None and t.lease_token is not None:
                out += await super().settle([o], t.lease_token)
            elif t is not None and not t.status.is_final:
                t.status = o.status
                t.result = o.result
                t.last_error = o.error
                t.finished_at = self.now()
                out.append(o.id)
        return out


class LosingRescueDriver(MemoryDriver):
    """Rescue drops the expired tasks instead of recovering them."""

    async def rescue(self, queue: str | None) -> int:
        now = self.now()
        gone = [
            id
            for id in sorted(self._leased)
            if (queue is None or self._tasks[id].queue == queue)
            and (self._tasks[id].lease_expires_at or 0.0) <= now
        ]
        for id in gone:
            self._leased.discard(id)
            del self._tasks[id]
        return len(gone)


class CancelsAnythingDriver(MemoryDriver):
    """Cancel accepts a task in any state (even RUNNING or DONE)."""

    async def cancel(self, id: str) -> bool:
        t = self._tasks.get(id)
        if t is None or t.status is Status.CANCELLED:
            return False
        t.status = Status.CANCELLED
        t.finished_at = self.now()
        self._unlease(t)
        return True


class RetriesOnlyKilledDriver(MemoryDriver):
    """Retry refuses FAILED tasks (only KILLED ones are retried)."""

    async def retry(self, id: str) -> bool:
        t = self._tasks.get(id)
        if t is None or t.status is not Status.KILLED:
            return False
        return await super().retry(id)


class IgnoresCancelOnSettleDriver(MemoryDriver):
    """Settle ignores a requested cancellation: the outcome stands (a DONE stays DONE)."""

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        for o in outcomes:
            t = self._held(o.id, token)
            if t is not None:
                t.cancel_requested = False
        return await super().settle(outcomes, token)


class DeafToChangesDriver(MemoryDriver):
    """``wait_for_change`` sleeps its whole ``max_wait`` whatever changes."""

    async def wait_for_change(self, max_wait: float) -> None:
        await trio.sleep(max_wait)


class ImpatientDriver(MemoryDriver):
    """``wait_for_change`` returns at once: its callers would poll in a tight loop."""

    async def wait_for_change(self, max_wait: float) -> None:
        await trio.lowlevel.checkpoint()


class RewindingScheduleDriver(MemoryDriver):
    """Upserts schedules blindly: an instance that lags moves the last tick back."""

    async def record_schedule(self, rec: ScheduleRecord) -> None:
        self._schedule_records()[rec.name] = dataclasses.replace(rec, updated_at=self.now())


class EndlessRunsDriver(MemoryDriver):
    """A node that ends KILLED or CANCELLED leaves its run RUNNING (no end rule)."""

    def _flow_ended(self, t: StoredTask, now: float) -> None:
        pass


class ForgetfulJoinsDriver(MemoryDriver):
    """Keeps no fan-in counter: every arrival starts a fresh count, so no join is made."""

    def _unarrived(self, inputs: list[str]) -> int:
        return len(inputs) - 1  # a count afresh, as if no input had arrived before

    @property
    def _flow_joins(self) -> dict[str, int]:
        return {}


class UncountedPurgeDriver(MemoryDriver):
    """Counts finished tasks with counters that a purge never takes down."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._purged: dict[tuple[str, Status], int] = {}

    async def purge(self, older_than: float) -> int:
        for t in self._tasks.values():
            if t.status.is_final and t.finished_at is not None and t.finished_at < older_than:
                key = (t.queue, t.status)
                self._purged[key] = self._purged.get(key, 0) + 1
        return await super().purge(older_than)

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        out = await super().counts(queue)
        for (q, st), n in self._purged.items():
            if queue is None or q == queue:
                per = out.setdefault(q, {})
                per[st] = per.get(st, 0) + n
        return out


def memory_factory(
    driver_cls: type[MemoryDriver],
) -> Callable[..., Any]:
    """Return an ``open_backend(**options)`` factory over ``driver_cls``."""

    @asynccontextmanager
    async def open_backend(
        *, queue: str = "default", clock: Clock | None = None, **options: Any
    ) -> AsyncIterator[Backend]:
        backend = Backend(driver_cls(clock=clock), queue=queue, **options)
        async with backend.running():
            yield backend

    return open_backend


# -- a file-backed driver shared by processes --


def _to_json(t: StoredTask) -> dict[str, Any]:
    d = asdict(t)
    d["payload"] = t.payload.hex()
    d["result"] = None if t.result is None else t.result.hex()
    d["status"] = t.status.value
    return d


def _from_json(d: dict[str, Any]) -> StoredTask:
    d = dict(d)
    d["payload"] = bytes.fromhex(d["payload"])
    d["result"] = None if d["result"] is None else bytes.fromhex(d["result"])
    d["status"] = Status(d["status"])
    return StoredTask(**d)


def _copy(t: StoredTask) -> StoredTask:
    return _from_json(_to_json(t))


@dataclass
class _Store:
    """What the file holds: the tasks, the paused queues, the workers' entries, the schedules,
    the queues' retention rules."""

    tasks: dict[str, StoredTask] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    schedules: dict[str, ScheduleRecord] = field(default_factory=dict)
    joins: dict[str, int] = field(default_factory=dict)  # workflow fan-in counters
    retention: dict[str, RetentionRule] = field(default_factory=dict)

    @classmethod
    def load(cls, text: str) -> _Store:
        d = json.loads(text)
        return cls(
            {t["id"]: _from_json(t) for t in d["tasks"]},
            set(d["paused"]),
            {w["name"]: WorkerRecord(**w) for w in d["workers"]},
            {r["name"]: ScheduleRecord(**r) for r in d.get("schedules", [])},
            d.get("joins", {}),
            {q: RetentionRule(**r) for q, r in d.get("retention", {}).items()},
        )

    def dump(self) -> str:
        return json.dumps(
            {
                "tasks": [_to_json(t) for t in self.tasks.values()],
                "paused": sorted(self.paused),
                "workers": [asdict(w) for w in self.workers.values()],
                "schedules": [asdict(r) for r in self.schedules.values()],
                "joins": self.joins,
                "retention": {q: asdict(r) for q, r in self.retention.items()},
            }
        )

    def looks(self) -> tuple[dict[str, tuple[Status, str | None]], set[str]]:
        """What the signals follow: each task's status and progress, and the flagged ids."""
        seen = {id: (t.status, t.progress) for id, t in self.tasks.items()}
        return seen, {id for id, t in self.tasks.items() if t.cancel_requested}


Op = Callable[[_Store, float], Any]


def _cancel_run_tasks(store: _Store, run: str, now: float) -> None:
    for t in store.tasks.values():
        if t.id == run or t.meta.get(META_RUN) != run or t.status.is_final:
            continue
        if t.status in _LEASED:
            t.cancel_requested = True
        else:
            t.status, t.last_error, t.finished_at = Status.CANCELLED, RUN_ENDED, now
    for id in [j for j in store.joins if j.startswith(run + "/")]:
        del store.joins[id]


def _end_rule(store: _Store, now: float) -> None:
    """Workflows' end rule, kept as an invariant checked after every operation.

    No run stays RUNNING with a node that ended KILLED or CANCELLED.
    """
    for t in list(store.tasks.values()):
        node = t.meta.get(META_NODE)
        if node is None or t.status not in (Status.KILLED, Status.CANCELLED):
            continue
        run = store.tasks.get(str(t.meta.get(META_RUN)))
        if run is None or run.status is not Status.RUNNING:
            continue
        run.status, run.finished_at, run.cancel_requested = t.status, now, False
        run.last_error = run_ended_error(str(node), t.status.value, t.last_error)
        _cancel_run_tasks(store, run.id, now)


def _resume(store: _Store, run: StoredTask, now: float) -> bool:
    mine = [t for t in store.tasks.values() if t.id != run.id and t.meta.get(META_RUN) == run.id]
    again = [t for t in mine if t.status in (Status.FAILED, Status.KILLED, Status.CANCELLED)]
    if not again or any(t.status in _LEASED for t in mine):
        return False
    run.status, run.finished_at, run.cancel_requested = Status.RUNNING, None, False
    for t in again:
        t.status, t.finished_at, t.cancel_requested = Status.PENDING, None, False
        t.run_at = max(t.run_at, now)
        t.max_attempts = max(t.max_attempts, t.attempts + 1)
    return True


def _of_live_run(store: _Store, t: StoredTask) -> bool:
    of = run_of(t.id, t.meta)
    run = None if of is None or of[1] else store.tasks.get(of[0])
    return run is not None and run.status is Status.RUNNING


class FileDriver:
    """A driver keeping a whole store in one JSON file, locked with ``fcntl``.

    Each operation takes an exclusive lock, reads the file, applies the
    change and replaces the file atomically (write, fsync, rename). The
    signals (``wait_for_change``, ``wait_for_cancel``) are two counters in a
    small file beside it, bumped when a task's status or progress changed or
    a cancellation was requested, and polled.
    """

    def __init__(self, path: str, *, clock: Clock | None = None) -> None:
        self.path = path
        self._clock = clock or time.time
        self._lock_path = path + ".lock"
        self._signals_path = path + ".signals"

    def now(self) -> float:
        return self._clock()

    def _write(self, path: str, text: str) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _signals(self) -> list[int]:
        try:
            with open(self._signals_path) as f:
                counts: list[int] = json.load(f)
                return counts
        except FileNotFoundError:
            return [0, 0]

    def _apply(self, fn: Op) -> Any:
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                store = _Store()
                if os.path.exists(self.path):
                    with open(self.path) as f:
                        store = _Store.load(f.read())
                before, looks = store.dump(), store.looks()
                out = fn(store, self.now())
                _end_rule(store, self.now())
                after = store.dump()
                if after != before:
                    self._write(self.path, after)
                    seen, flagged = store.looks()
                    changed, cancelled = seen != looks[0], bool(flagged - looks[1])
                    if changed or cancelled:
                        counts = self._signals()
                        self._write(
                            self._signals_path,
                            json.dumps([counts[0] + changed, counts[1] + cancelled]),
                        )
                return out
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def _run(self, fn: Op) -> Any:
        return await trio.to_thread.run_sync(self._apply, fn)

    @staticmethod
    def _held(store: _Store, id: str, token: str) -> StoredTask | None:
        t = store.tasks.get(id)
        if t is None or t.lease_token != token or t.status not in _LEASED:
            return None
        return t

    @staticmethod
    def _insert(store: _Store, new: Sequence[StoredTask], now: float) -> int:
        n = 0
        for t in new:
            if t.id not in store.tasks:
                store.tasks[t.id] = t = _copy(t)
                t.created_at = t.created_at or now
                n += 1
        return n

    async def insert(self, new: Sequence[StoredTask]) -> int:
        n: int = await self._run(lambda store, now: self._insert(store, new, now))
        return n

    async def replace(self, new: Sequence[StoredTask]) -> int:
        def op(store: _Store, now: float) -> int:
            for t in new:
                old = store.tasks.get(t.id)
                if old is not None and old.status.is_final:
                    del store.tasks[t.id]
            return self._insert(store, new, now)

        n: int = await self._run(op)
        return n

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[StoredTask]:
        def op(store: _Store, now: float) -> list[StoredTask]:
            if queue in store.paused:
                return []
            ready = [
                t
                for t in store.tasks.values()
                if t.queue == queue and t.status in _READY and t.run_at <= now
            ]
            ready.sort(key=lambda t: (-t.priority, t.run_at, t.id))
            out = []
            for t in ready[:limit]:
                t.status = Status.QUEUED
                t.attempts += 1
                t.lease_token = token
                t.lease_expires_at = now + lease_seconds
                t.worker = worker or None
                out.append(_copy(t))
            return out

        out: list[StoredTask] = await self._run(op)
        return out

    async def start(self, ids: Sequence[str], token: str) -> None:
        def op(store: _Store, now: float) -> None:
            for id in ids:
                t = self._held(store, id, token)
                if t is not None and t.status is Status.QUEUED:
                    t.status = Status.RUNNING
                    t.started_at = now

        await self._run(op)

    async def extend(
        self,
        ids: Sequence[str],
        token: str,
        lease_seconds: float,
        progress: Mapping[str, str] | None = None,
    ) -> Extended:
        def op(store: _Store, now: float) -> Extended:
            out = Extended([])
            for id in ids:
                t = self._held(store, id, token)
                if t is not None:
                    t.lease_expires_at = now + lease_seconds
                    out.held.append(id)
                    if t.cancel_requested:
                        out.cancel.append(id)
                    if progress and id in progress:
                        t.progress = progress[id]
            return out

        out: Extended = await self._run(op)
        return out

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        def op(store: _Store, now: float) -> list[str]:
            applied = []
            for o in outcomes:
                t = self._held(store, o.id, token)
                if t is not None:
                    apply_outcome(t, o, now)
                    applied.append(o.id)
            return applied

        applied: list[str] = await self._run(op)
        return applied

    @staticmethod
    def _cancelled(t: StoredTask, now: float) -> None:
        t.lease_token = t.lease_expires_at = None
        t.status = Status.CANCELLED
        t.last_error = CANCEL_REQUESTED
        t.finished_at = now
        t.cancel_requested = False

    async def advance(self, steps: Sequence[Transition], token: str) -> list[str]:
        def op(store: _Store, now: float) -> list[str]:
            applied = []
            for s in steps:
                t = self._held(store, s.id, token)
                if t is None:
                    continue
                apply_outcome(t, s, now)
                applied.append(s.id)
                run = store.tasks.get(s.run)
                if t.status is not Status.DONE or run is None or run.status is not Status.RUNNING:
                    continue
                if run.cancel_requested:
                    continue
                self._insert(store, s.spawn, now)
                for j in s.joins:
                    if j.task.id in store.joins:
                        left = store.joins[j.task.id] - 1
                    else:  # the first arrival, or the first since the run resumed
                        got_ = [store.tasks.get(i) for i in j.inputs]
                        left = sum(1 for r in got_ if r is None or r.status is not Status.DONE)
                    store.joins[j.task.id] = left
                    if left > 0:
                        continue
                    del store.joins[j.task.id]
                    got = [store.tasks[i].result if i in store.tasks else None for i in j.inputs]
                    task = _copy(j.task)
                    task.payload = bytes(task.payload) + gathered(got)
                    self._insert(store, [task], now)
                if s.finish:
                    run.status, run.result, run.finished_at = Status.DONE, t.result, now
            return applied

        applied: list[str] = await self._run(op)
        return applied

    async def release(self, ids: Sequence[str], token: str) -> int:
        def op(store: _Store, now: float) -> int:
            n = 0
            for id in ids:
                t = self._held(store, id, token)
                if t is None:
                    continue
                if t.cancel_requested:
                    self._cancelled(t, now)
                else:
                    t.lease_token = t.lease_expires_at = None
                    t.status = Status.PENDING
                    t.attempts = max(0, t.attempts - 1)
                n += 1
            return n

        n: int = await self._run(op)
        return n

    def _rescue_one(self, store: _Store, t: StoredTask, now: float) -> None:
        if t.cancel_requested:
            self._cancelled(t, now)
            return
        t.lease_token = t.lease_expires_at = None
        if t.attempts >= t.max_attempts:
            t.status = Status.KILLED
            t.last_error = f"lease expired on attempt {t.attempts} of {t.max_attempts}"
            t.finished_at = now
        else:
            t.status = Status.FAILED
            t.last_error = f"lease expired on attempt {t.attempts}"
            t.run_at = now

    async def rescue(self, queue: str | None) -> int:
        def op(store: _Store, now: float) -> int:
            expired = [
                t
                for t in list(store.tasks.values())
                if t.status in _LEASED
                and (queue is None or t.queue == queue)
                and t.lease_expires_at is not None
                and t.lease_expires_at <= now
            ]
            for t in expired:
                self._rescue_one(store, t, now)
            return len(expired)

        n: int = await self._run(op)
        return n

    async def next_run_at(self, queue: str) -> float | None:
        def op(store: _Store, now: float) -> float | None:
            if queue in store.paused:
                return None
            times = [
                t.run_at for t in store.tasks.values() if t.queue == queue and t.status in _READY
            ]
            return min(times) if times else None

        best: float | None = await self._run(op)
        return best

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        await trio.sleep(min(max_wait, 0.05))

    async def _wait_signal(self, which: int, max_wait: float) -> None:
        first = self._signals()[which]
        with trio.move_on_after(max_wait):
            while True:  # a toy polls; a real driver waits on an event or a notification
                await trio.sleep(0.02)
                if self._signals()[which] != first:
                    return

    async def wait_for_change(self, max_wait: float) -> None:
        await self._wait_signal(0, max_wait)

    async def wait_for_cancel(self, max_wait: float) -> None:
        await self._wait_signal(1, max_wait)

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        def op(store: _Store, now: float) -> dict[str, dict[Status, int]]:
            out: dict[str, dict[Status, int]] = {}
            for t in store.tasks.values():
                if queue is None or t.queue == queue:
                    per = out.setdefault(t.queue, {})
                    per[t.status] = per.get(t.status, 0) + 1
            return out

        out: dict[str, dict[Status, int]] = await self._run(op)
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
        def op(store: _Store, now: float) -> list[StoredTask]:
            sel = [
                t
                for t in store.tasks.values()
                if (queue is None or t.queue == queue)
                and (status is None or t.status is status)
                and (before is None or t.id < before)
            ]
            sel.sort(key=lambda t: t.id, reverse=True)
            return sel[offset : offset + limit]

        out: list[StoredTask] = await self._run(op)
        return out

    async def get(self, id: str) -> StoredTask | None:
        out: StoredTask | None = await self._run(lambda store, now: store.tasks.get(id))
        return out

    async def get_many(self, ids: Sequence[str]) -> list[StoredTask]:
        def op(store: _Store, now: float) -> list[StoredTask]:
            return [t for id in ids if (t := store.tasks.get(id)) is not None]

        out: list[StoredTask] = await self._run(op)
        return out

    async def queues_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        def op(store: _Store, now: float) -> dict[str, tuple[str, Status]]:
            tasks = store.tasks
            return {id: (t.queue, t.status) for id in ids if (t := tasks.get(id)) is not None}

        out: dict[str, tuple[str, Status]] = await self._run(op)
        return out

    async def retry(self, id: str) -> bool:
        def op(store: _Store, now: float) -> bool:
            t = store.tasks.get(id)
            if t is None:
                return False
            of = run_of(t.id, t.meta)
            run = None if of is None else store.tasks.get(of[0])
            if run is not None and not is_record_of(run.id, run.meta):
                run = None
            kind = retry_kind(t.id, t.status, t.meta, None if run is None else run.status)
            if kind is RetryKind.RUN:
                return run is not None and _resume(store, run, now)
            if kind is RetryKind.NO:
                return False
            t.status = Status.PENDING
            t.run_at = now
            t.finished_at = None
            t.max_attempts = max(t.max_attempts, t.attempts + 1)
            return True

        ok: bool = await self._run(op)
        return ok

    async def retry_many(self, ids: Sequence[str]) -> int:
        def op(store: _Store, now: float) -> int:
            n = 0
            for id in dict.fromkeys(ids):
                t = store.tasks.get(id)
                if t is None or t.status not in (Status.FAILED, Status.KILLED):
                    continue
                if run_of(t.id, t.meta) is not None:  # a run's: retried by id, resumed
                    continue
                t.status = Status.PENDING
                t.run_at = now
                t.finished_at = None
                t.max_attempts = max(t.max_attempts, t.attempts + 1)
                n += 1
            return n

        n: int = await self._run(op)
        return n

    async def cancel(self, id: str) -> bool:
        return await self.cancel_many([id]) == 1

    async def cancel_many(self, ids: Sequence[str]) -> int:
        def op(store: _Store, now: float) -> int:
            n = 0
            for id in dict.fromkeys(ids):
                t = store.tasks.get(id)
                if t is None or t.status.is_final:
                    continue
                n += 1
                if t.meta.get(META_RUN) == t.id and META_NODE not in t.meta:  # a run record
                    t.status, t.last_error, t.finished_at = Status.CANCELLED, RUN_CANCELLED, now
                    _cancel_run_tasks(store, t.id, now)
                elif t.status in _LEASED:
                    t.cancel_requested = True
                else:
                    t.status = Status.CANCELLED
                    t.finished_at = now
            return n

        n: int = await self._run(op)
        return n

    async def delete(self, ids: Sequence[str]) -> int:
        def op(store: _Store, now: float) -> int:
            gone = [
                id
                for id in dict.fromkeys(ids)
                if id in store.tasks
                and store.tasks[id].status not in (Status.QUEUED, Status.RUNNING)
                and not _of_live_run(store, store.tasks[id])
            ]
            for id in gone:
                del store.tasks[id]
            return len(gone)

        n: int = await self._run(op)
        return n

    async def finished_histogram(self, since: float, step: float) -> list[tuple[int, Status, int]]:
        def op(store: _Store, now: float) -> list[tuple[int, Status, int]]:
            counts: dict[tuple[int, Status], int] = {}
            for t in store.tasks.values():
                if t.status.is_final and t.finished_at is not None and t.finished_at >= since:
                    key = (int((t.finished_at - since) // step), t.status)
                    counts[key] = counts.get(key, 0) + 1
            return [(b, s, n) for (b, s), n in sorted(counts.items())]

        out: list[tuple[int, Status, int]] = await self._run(op)
        return out

    async def purge(self, older_than: float) -> int:
        def op(store: _Store, now: float) -> int:
            gone = [
                id
                for id, t in store.tasks.items()
                if t.status.is_final
                and t.finished_at is not None
                and t.finished_at < older_than
                and not _of_live_run(store, t)
            ]
            for id in gone:
                del store.tasks[id]
            return len(gone)

        n: int = await self._run(op)
        return n

    async def prune(
        self,
        queue: str | None,
        before: Mapping[Status, float],
        limit: int,
        workers_before: float,
    ) -> int:
        def op(store: _Store, now: float) -> int:
            gone = [
                id
                for id, t in store.tasks.items()
                if (queue is None or t.queue == queue)
                and t.status in before
                and t.status.is_final
                and t.finished_at is not None
                and t.finished_at < before[t.status]
                and not _of_live_run(store, t)
            ][:limit]
            for id in gone:
                del store.tasks[id]
            for name in [n for n, w in store.workers.items() if w.last_seen < workers_before]:
                del store.workers[name]
            return len(gone)

        n: int = await self._run(op)
        return n

    async def pause(self, queue: str) -> None:
        await self._run(lambda store, now: store.paused.add(queue))

    async def resume(self, queue: str) -> None:
        await self._run(lambda store, now: store.paused.discard(queue))

    async def paused(self) -> list[str]:
        out: list[str] = await self._run(lambda store, now: sorted(store.paused))
        return out

    async def set_retention(self, queue: str, rule: RetentionRule) -> None:
        await self._run(lambda store, now: store.retention.__setitem__(queue, rule))

    async def clear_retention(self, queue: str) -> None:
        await self._run(lambda store, now: store.retention.pop(queue, None))

    async def retentions(self, queues: Sequence[str] | None) -> dict[str, RetentionRule]:
        def op(store: _Store, now: float) -> dict[str, RetentionRule]:
            names = sorted(store.retention) if queues is None else queues
            return {q: store.retention[q] for q in names if q in store.retention}

        out: dict[str, RetentionRule] = await self._run(op)
        return out

    async def register_worker(self, worker: WorkerRecord) -> None:
        def op(store: _Store, now: float) -> None:
            store.workers[worker.name] = dataclasses.replace(worker, last_seen=now)

        await self._run(op)

    async def remove_worker(self, name: str) -> None:
        await self._run(lambda store, now: store.workers.pop(name, None))

    async def workers(self, seen_after: float) -> list[WorkerRecord]:
        def op(store: _Store, now: float) -> list[WorkerRecord]:
            found = [w for w in store.workers.values() if w.last_seen > seen_after]
            return sorted(found, key=lambda w: w.name)

        out: list[WorkerRecord] = await self._run(op)
        return out

    async def record_schedule(self, rec: ScheduleRecord) -> None:
        def op(store: _Store, now: float) -> None:
            merged = merge_schedule(store.schedules.get(rec.name), rec, now)
            if merged is not None:
                store.schedules[rec.name] = merged

        await self._run(op)

    async def schedules(self) -> list[ScheduleRecord]:
        def op(store: _Store, now: float) -> list[ScheduleRecord]:
            return [store.schedules[n] for n in sorted(store.schedules)]

        out: list[ScheduleRecord] = await self._run(op)
        return out

    async def forget_schedule(self, name: str, updated_at: float) -> bool:
        def op(store: _Store, now: float) -> bool:
            rec = store.schedules.get(name)
            if rec is None or rec.updated_at > updated_at:
                return False
            del store.schedules[name]
            return True

        out: bool = await self._run(op)
        return out

    async def aclose(self) -> None:
        pass


class LosingRescueFileDriver(FileDriver):
    """Rescue deletes an expired task instead of recovering it."""

    def _rescue_one(self, store: _Store, t: StoredTask, now: float) -> None:
        del store.tasks[t.id]


def _path_of(url: str) -> str:
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme not in ("toyfile", "toyfile-lossy"):
        raise ValueError(f"not a toy file URL: {url!r}")
    return "/" + rest


@asynccontextmanager
async def open_file_backend(
    url: str, *, queue: str = "default", clock: Clock | None = None, **options: Any
) -> AsyncIterator[Backend]:
    """Open ``toyfile:///path.json`` (or ``toyfile-lossy:///...``, losing tasks on rescue)."""
    cls = LosingRescueFileDriver if url.startswith("toyfile-lossy:") else FileDriver
    backend = Backend(cls(_path_of(url), clock=clock), queue=queue, **options)
    async with backend.running():
        yield backend


open_forgetful_release = memory_factory(ForgetfulReleaseDriver)
open_unchecked_settle = memory_factory(UncheckedSettleDriver)
open_losing_rescue = memory_factory(LosingRescueDriver)
open_cancels_anything = memory_factory(CancelsAnythingDriver)
open_retries_only_killed = memory_factory(RetriesOnlyKilledDriver)
open_ignores_cancel_on_settle = memory_factory(IgnoresCancelOnSettleDriver)
open_deaf_to_changes = memory_factory(DeafToChangesDriver)
open_impatient = memory_factory(ImpatientDriver)
open_rewinding_schedule = memory_factory(RewindingScheduleDriver)
open_endless_runs = memory_factory(EndlessRunsDriver)
open_forgetful_joins = memory_factory(ForgetfulJoinsDriver)
open_uncounted_purge = memory_factory(UncountedPurgeDriver)
