"""``Model``: the storage-driver contract as plain Python, the oracle of the state machine.

It keeps its own copy of every rule on purpose: an oracle should not share
code with what it checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .._driver import Outcome
from .._task import Status

__all__ = ["Model"]

log = logging.getLogger("trioqueue.testing")

_READY = (Status.PENDING, Status.FAILED)
_LEASED = (Status.QUEUED, Status.RUNNING)


@dataclass(slots=True)
class _Row:
    id: str
    payload: bytes
    priority: int
    run_at: float
    max_attempts: int
    status: Status = Status.PENDING
    attempts: int = 0
    token: str | None = None
    expires: float | None = None
    finished_at: float | None = None
    result: bytes | None = None
    snoozes: int = 0
    cancel_requested: bool = False

    def end_cancelled(self, now: float) -> None:
        """End a task whose cancellation was requested: CANCELLED, lease cleared."""
        self.token = self.expires = None
        self.status = Status.CANCELLED
        self.finished_at = now
        self.cancel_requested = False


class Model:
    """The driver contract as plain Python over one queue: the expected answers.

    Each method takes the time ``now`` and returns what the driver must return.
    """

    def __init__(self) -> None:
        self.rows: dict[str, _Row] = {}
        self.paused = False

    def _held(self, id: str, token: str) -> _Row | None:
        r = self.rows.get(id)
        if r is None or r.token != token or r.status not in _LEASED:
            return None
        return r

    def insert(
        self, id: str, payload: bytes, *, priority: int, run_at: float, max_attempts: int
    ) -> int:
        """Store a new task; return 1, or 0 if the id exists."""
        if id in self.rows:
            return 0
        self.rows[id] = _Row(id, payload, priority, run_at, max_attempts)
        return 1

    def claim(self, now: float, limit: int, token: str, lease: float) -> list[str]:
        """Lease up to ``limit`` ready tasks by priority, run_at, id; return their ids.

        A paused queue gives nothing.
        """
        if self.paused:
            return []
        ready = [r for r in self.rows.values() if r.status in _READY and r.run_at <= now]
        ready.sort(key=lambda r: (-r.priority, r.run_at, r.id))
        out = []
        for r in ready[:limit]:
            r.status = Status.QUEUED
            r.attempts += 1
            r.token = token
            r.expires = now + lease
            out.append(r.id)
        return out

    def start(self, ids: Sequence[str], token: str) -> None:
        """Mark tasks held by ``token`` and QUEUED as RUNNING."""
        for id in ids:
            r = self._held(id, token)
            if r is not None and r.status is Status.QUEUED:
                r.status = Status.RUNNING

    def extend(
        self, now: float, ids: Sequence[str], token: str, lease: float
    ) -> tuple[list[str], list[str]]:
        """Extend the leases ``token`` still holds; return their ids and those flagged to cancel."""
        kept, cancel = [], []
        for id in ids:
            r = self._held(id, token)
            if r is not None:
                r.expires = now + lease
                kept.append(id)
                if r.cancel_requested:
                    cancel.append(id)
        return kept, cancel

    def settle(self, now: float, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Apply the outcomes of tasks ``token`` holds; return the ids applied.

        A flagged task ends CANCELLED whatever its outcome; a PENDING outcome
        (a snooze) gives the attempt back and counts the snooze.
        """
        applied = []
        for o in outcomes:
            r = self._held(o.id, token)
            if r is None:
                continue
            applied.append(o.id)
            if r.cancel_requested:
                r.end_cancelled(now)
                continue
            r.token = r.expires = None
            status = o.status
            if status is Status.FAILED and r.attempts >= r.max_attempts:
                status = Status.KILLED
            r.status = status
            if status is Status.DONE:
                r.result = o.result
                r.finished_at = now
            elif status is Status.PENDING:
                r.attempts = max(0, r.attempts - 1)
                r.snoozes += 1
                r.run_at = now + max(0.0, o.delay)
            elif status is Status.FAILED:
                r.run_at = now + max(0.0, o.delay)
            else:
                r.finished_at = now
        return applied

    def release(self, now: float, ids: Sequence[str], token: str) -> int:
        """Give back tasks ``token`` holds as PENDING, uncounting the attempt; return how many.

        A flagged task ends CANCELLED instead.
        """
        n = 0
        for id in ids:
            r = self._held(id, token)
            if r is None:
                continue
            n += 1
            if r.cancel_requested:
                r.end_cancelled(now)
                continue
            r.token = r.expires = None
            r.status = Status.PENDING
            r.attempts = max(0, r.attempts - 1)
        return n

    def rescue(self, now: float) -> int:
        """Recover expired leases: CANCELLED if flagged, KILLED if out of attempts, else FAILED."""
        n = 0
        for r in self.rows.values():
            if r.status in _LEASED and r.expires is not None and r.expires <= now:
                r.token = r.expires = None
                if r.cancel_requested:
                    r.end_cancelled(now)
                elif r.attempts >= r.max_attempts:
                    r.status = Status.KILLED
                    r.finished_at = now
                else:
                    r.status = Status.FAILED
                    r.run_at = now
                n += 1
        return n

    def next_run_at(self) -> float | None:
        """Return the earliest run_at of a PENDING or FAILED task, or None."""
        times = [r.run_at for r in self.rows.values() if r.status in _READY]
        return min(times) if times else None

    def retry(self, now: float, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed."""
        r = self.rows.get(id)
        if r is None or r.status not in (Status.FAILED, Status.KILLED):
            return False
        r.status = Status.PENDING
        r.run_at = now
        r.finished_at = None
        r.max_attempts = max(r.max_attempts, r.attempts + 1)
        return True

    def cancel(self, now: float, id: str) -> bool:
        """Cancel a PENDING or FAILED task, flag a QUEUED or RUNNING one; return whether either."""
        r = self.rows.get(id)
        if r is None or r.status.is_final:
            return False
        if r.status in _LEASED:
            r.cancel_requested = True
        else:
            r.status = Status.CANCELLED
            r.finished_at = now
        return True

    def pause(self) -> None:
        """Pause the queue: claims give nothing."""
        self.paused = True

    def resume(self) -> None:
        """Resume the queue."""
        self.paused = False

    def purge(self, older_than: float) -> list[str]:
        """Delete finished tasks finished before ``older_than``; return their ids."""
        gone = [
            id
            for id, r in self.rows.items()
            if r.status.is_final and r.finished_at is not None and r.finished_at < older_than
        ]
        for id in gone:
            del self.rows[id]
        return gone

    def counts(self) -> dict[Status, int]:
        """Return task counts by status."""
        out: dict[Status, int] = {}
        for r in self.rows.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out
