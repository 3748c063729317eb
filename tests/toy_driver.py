"""Toy drivers for the conformance and crash tests.

- ``FileDriver``: a whole store in one JSON file, rewritten atomically under
  an ``fcntl`` lock, so several processes share it; simple and slow on purpose.
- Broken drivers, each breaking one promise: ``ForgetfulReleaseDriver`` (does
  not give back tasks that never started, so shutdown strands its prefetch),
  ``UncheckedSettleDriver`` (settles without checking the lease),
  ``LosingRescueDriver`` and ``LosingRescueFileDriver`` (lose a task on rescue).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import trio

from trioqueue import Backend, Outcome, Status, StoredTask
from trioqueue._driver import apply_outcome
from trioqueue.backends.memory import MemoryDriver

Clock = Callable[[], float]

_READY = (Status.PENDING, Status.FAILED)
_LEASED = (Status.QUEUED, Status.RUNNING)


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


class FileDriver:
    """A driver keeping every task in one JSON file, locked with ``fcntl``.

    Each operation takes an exclusive lock, reads the file, applies the
    change and replaces the file atomically (write, fsync, rename).
    """

    def __init__(self, path: str, *, clock: Clock | None = None) -> None:
        self.path = path
        self._clock = clock or time.time
        self._lock_path = path + ".lock"

    def now(self) -> float:
        return self._clock()

    def _apply(self, fn: Callable[[dict[str, StoredTask], float], Any]) -> Any:
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                tasks: dict[str, StoredTask] = {}
                if os.path.exists(self.path):
                    with open(self.path) as f:
                        tasks = {d["id"]: _from_json(d) for d in json.load(f)}
                before = json.dumps([_to_json(t) for t in tasks.values()])
                out = fn(tasks, self.now())
                after = json.dumps([_to_json(t) for t in tasks.values()])
                if after != before:
                    tmp = f"{self.path}.{os.getpid()}.tmp"
                    with open(tmp, "w") as f:
                        f.write(after)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, self.path)
                return out
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def _run(self, fn: Callable[[dict[str, StoredTask], float], Any]) -> Any:
        return await trio.to_thread.run_sync(self._apply, fn)

    @staticmethod
    def _held(tasks: dict[str, StoredTask], id: str, token: str) -> StoredTask | None:
        t = tasks.get(id)
        if t is None or t.lease_token != token or t.status not in _LEASED:
            return None
        return t

    async def insert(self, new: Sequence[StoredTask]) -> int:
        def op(tasks: dict[str, StoredTask], now: float) -> int:
            n = 0
            for t in new:
                if t.id not in tasks:
                    tasks[t.id] = _from_json(_to_json(t))
                    n += 1
            return n

        n: int = await self._run(op)
        return n

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float
    ) -> list[StoredTask]:
        def op(tasks: dict[str, StoredTask], now: float) -> list[StoredTask]:
            ready = [
                t
                for t in tasks.values()
                if t.queue == queue and t.status in _READY and t.run_at <= now
            ]
            ready.sort(key=lambda t: (-t.priority, t.run_at, t.id))
            out = []
            for t in ready[:limit]:
                t.status = Status.QUEUED
                t.attempts += 1
                t.lease_token = token
                t.lease_expires_at = now + lease_seconds
                out.append(_from_json(_to_json(t)))
            return out

        out: list[StoredTask] = await self._run(op)
        return out

    async def start(self, ids: Sequence[str], token: str) -> None:
        def op(tasks: dict[str, StoredTask], now: float) -> None:
            for id in ids:
                t = self._held(tasks, id, token)
                if t is not None and t.status is Status.QUEUED:
                    t.status = Status.RUNNING

        await self._run(op)

    async def extend(self, ids: Sequence[str], token: str, lease_seconds: float) -> list[str]:
        def op(tasks: dict[str, StoredTask], now: float) -> list[str]:
            kept = []
            for id in ids:
                t = self._held(tasks, id, token)
                if t is not None:
                    t.lease_expires_at = now + lease_seconds
                    kept.append(id)
            return kept

        kept: list[str] = await self._run(op)
        return kept

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        def op(tasks: dict[str, StoredTask], now: float) -> list[str]:
            applied = []
            for o in outcomes:
                t = self._held(tasks, o.id, token)
                if t is None:
                    continue
                apply_outcome(t, o, now)
                applied.append(o.id)
            return applied

        applied: list[str] = await self._run(op)
        return applied

    async def release(self, ids: Sequence[str], token: str) -> int:
        def op(tasks: dict[str, StoredTask], now: float) -> int:
            n = 0
            for id in ids:
                t = self._held(tasks, id, token)
                if t is not None:
                    t.lease_token = t.lease_expires_at = None
                    t.status = Status.PENDING
                    t.attempts = max(0, t.attempts - 1)
                    n += 1
            return n

        n: int = await self._run(op)
        return n

    def _rescue_one(self, tasks: dict[str, StoredTask], t: StoredTask, now: float) -> None:
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
        def op(tasks: dict[str, StoredTask], now: float) -> int:
            expired = [
                t
                for t in list(tasks.values())
                if t.status in _LEASED
                and (queue is None or t.queue == queue)
                and t.lease_expires_at is not None
                and t.lease_expires_at <= now
            ]
            for t in expired:
                self._rescue_one(tasks, t, now)
            return len(expired)

        n: int = await self._run(op)
        return n

    async def next_run_at(self, queue: str) -> float | None:
        def op(tasks: dict[str, StoredTask], now: float) -> float | None:
            times = [t.run_at for t in tasks.values() if t.queue == queue and t.status in _READY]
            return min(times) if times else None

        best: float | None = await self._run(op)
        return best

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        await trio.sleep(min(max_wait, 0.05))

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        def op(tasks: dict[str, StoredTask], now: float) -> dict[str, dict[Status, int]]:
            out: dict[str, dict[Status, int]] = {}
            for t in tasks.values():
                if queue is None or t.queue == queue:
                    per = out.setdefault(t.queue, {})
                    per[t.status] = per.get(t.status, 0) + 1
            return out

        out: dict[str, dict[Status, int]] = await self._run(op)
        return out

    async def list_tasks(
        self, *, queue: str | None, status: Status | None, limit: int, offset: int
    ) -> list[StoredTask]:
        def op(tasks: dict[str, StoredTask], now: float) -> list[StoredTask]:
            sel = [
                t
                for t in tasks.values()
                if (queue is None or t.queue == queue) and (status is None or t.status is status)
            ]
            sel.sort(key=lambda t: t.id, reverse=True)
            return sel[offset : offset + limit]

        out: list[StoredTask] = await self._run(op)
        return out

    async def get(self, id: str) -> StoredTask | None:
        out: StoredTask | None = await self._run(lambda tasks, now: tasks.get(id))
        return out

    async def queues_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        def op(tasks: dict[str, StoredTask], now: float) -> dict[str, tuple[str, Status]]:
            return {id: (t.queue, t.status) for id in ids if (t := tasks.get(id)) is not None}

        out: dict[str, tuple[str, Status]] = await self._run(op)
        return out

    async def retry(self, id: str) -> bool:
        def op(tasks: dict[str, StoredTask], now: float) -> bool:
            t = tasks.get(id)
            if t is None or t.status not in (Status.FAILED, Status.KILLED):
                return False
            t.status = Status.PENDING
            t.run_at = now
            t.finished_at = None
            t.max_attempts = max(t.max_attempts, t.attempts + 1)
            return True

        ok: bool = await self._run(op)
        return ok

    async def cancel(self, id: str) -> bool:
        def op(tasks: dict[str, StoredTask], now: float) -> bool:
            t = tasks.get(id)
            if t is None or t.status not in _READY:
                return False
            t.status = Status.CANCELLED
            t.finished_at = now
            return True

        ok: bool = await self._run(op)
        return ok

    async def purge(self, older_than: float) -> int:
        def op(tasks: dict[str, StoredTask], now: float) -> int:
            gone = [
                id
                for id, t in tasks.items()
                if t.status.is_final and t.finished_at is not None and t.finished_at < older_than
            ]
            for id in gone:
                del tasks[id]
            return len(gone)

        n: int = await self._run(op)
        return n

    async def aclose(self) -> None:
        pass


class LosingRescueFileDriver(FileDriver):
    """Rescue deletes an expired task instead of recovering it."""

    def _rescue_one(self, tasks: dict[str, StoredTask], t: StoredTask, now: float) -> None:
        del tasks[t.id]


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
