"""The storage-driver protocol: the few batch operations a backend implements.

Everything else (channels, batching, prefetch, lease extension, settling,
shutdown release, retries of storage errors) is the shared bridge in
``_backend.py``. See ``docs/drivers.md`` for the contract in prose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._task import MAX_TIMESTAMP, Meta, Status, Task, TaskId, from_timestamp

__all__ = ["Driver", "Outcome", "StoredTask", "apply_outcome", "to_task"]


@dataclass(slots=True, eq=False)
class StoredTask:
    """A task as storage holds it: the payload is still encoded.

    Times are POSIX seconds (floats, sub-second precision) on the driver's clock.
    """

    id: str
    queue: str
    payload: bytes
    status: Status = Status.PENDING
    attempts: int = 0
    max_attempts: int = 25
    run_at: float = 0.0
    priority: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    result: bytes | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    traceback: str | None = None


def to_task(
    rec: StoredTask, args: Any, result: Any = None, status: Status | None = None
) -> Task[Any]:
    """Return the ``Task`` a stored record stands for, with its args (and result) decoded.

    Args:
      rec: The stored record.
      args: Its payload, decoded by the caller.
      result: Its result, decoded by the caller.
      status: The status to show instead of the stored one (a worker shows RUNNING).
    """
    run_at = rec.run_at
    if not 0.0 <= run_at <= MAX_TIMESTAMP:  # a hostile row must not break a listing
        run_at = min(max(run_at, 0.0), MAX_TIMESTAMP)
    return Task(
        args,
        str.__new__(TaskId, rec.id),  # checked when it was pushed
        rec.queue,
        rec.attempts,
        rec.max_attempts,
        from_timestamp(run_at),
        rec.priority,
        Meta(rec.meta),
        rec.status if status is None else status,
        rec.last_error,
        result,
        rec.traceback,
    )


@dataclass(slots=True)
class Outcome:
    """How one claimed task ended, to be settled under its lease.

    ``status`` is DONE (with ``result``, and ``error`` when it carries a
    note such as why the result was not stored), FAILED (with ``error`` and ``delay``,
    the seconds until the next attempt), KILLED (with ``error``) or CANCELLED.
    A driver turns FAILED into KILLED itself when ``attempts >= max_attempts``.
    ``traceback`` is the failure's bounded traceback, stored with ``error``
    (None when the failure has none, e.g. ``Abort``).
    """

    id: str
    status: Status
    result: bytes | None = None
    error: str | None = None
    delay: float = 0.0
    traceback: str | None = None


def apply_outcome(task: StoredTask, outcome: Outcome, now: float) -> None:
    """Apply the settle rules of the contract to a record held in Python.

    For drivers that keep records as Python objects (the memory driver, a
    file-backed one): clears the lease; DONE stores the result; FAILED stores
    the error and moves ``run_at`` to ``now + delay``, or becomes KILLED when
    no attempt is left; KILLED and CANCELLED store the error. Final statuses
    get ``finished_at``. The caller checks the lease first.
    """
    task.lease_token = task.lease_expires_at = None
    status = outcome.status
    if status is Status.FAILED and task.attempts >= task.max_attempts:
        status = Status.KILLED
    task.status = status
    if status is Status.DONE:
        task.result = outcome.result
        if outcome.error is not None:  # a note: the result was not stored
            task.last_error = outcome.error
    else:
        task.last_error = outcome.error
        task.traceback = outcome.traceback
    if status is Status.FAILED:
        task.run_at = now + max(0.0, outcome.delay)
    else:
        task.finished_at = now


class Driver(Protocol):
    """The batch operations a storage engine implements for the bridge.

    Every method may block and is called from Trio; drivers that call blocking
    libraries run them off the Trio thread. Errors are the driver's own
    (``sqlite3.Error``, ``psycopg.Error``...): the bridge retries them with
    backoff and translates them at its edge. Each method is atomic: it applies
    to every item or to none.

    Leases: a claim gives each task the caller's ``token`` and an expiry
    ``lease_seconds`` from now. Every later call that names a token
    (``start``, ``extend``, ``settle``, ``release``) applies only to tasks that
    still hold that token in status QUEUED or RUNNING: compare-and-set.
    """

    def now(self) -> float:
        """Return the driver's clock, POSIX seconds (memory: the Trio clock)."""
        ...

    async def insert(self, tasks: Sequence[StoredTask]) -> int:
        """Store new tasks; a task whose id exists already is skipped.

        Returns:
          How many were stored.
        """
        ...

    async def queues_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        """Return the queue and status of each stored task among ``ids`` (one batched read).

        The bridge asks only when an insert stored fewer tasks than it was
        given, to tell an id its queue holds already from one of another queue.
        """
        ...

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks of ``queue`` under a lease.

        Ready: PENDING or FAILED with ``run_at <= now``. Order: priority
        descending, then ``run_at``, then id. Each claimed task becomes QUEUED,
        its ``attempts`` grows by one, and it gets the lease. Returns them in order.
        """
        ...

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING (a worker began them)."""
        ...

    async def extend(self, ids: Sequence[str], token: str, lease_seconds: float) -> list[str]:
        """Push the lease expiry of held tasks to ``lease_seconds`` from now.

        Returns:
          The ids whose lease is still held (the others were lost).
        """
        ...

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Record outcomes of leased tasks (compare-and-set on the lease).

        DONE stores the result (and ``error``, when given, as ``last_error``);
        FAILED stores the error and its traceback and sets ``run_at`` to now +
        delay, or becomes KILLED when ``attempts >= max_attempts``; KILLED and
        CANCELLED store the error and the traceback. Each clears the lease.

        Returns:
          The ids actually settled; an outcome whose lease was lost is dropped.
        """
        ...

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back unstarted: PENDING, lease cleared, attempt uncounted.

        Returns:
          How many were released.
        """
        ...

    async def rescue(self, queue: str | None) -> int:
        """Recover tasks whose lease expired (their worker died or hung).

        The attempt counts: a task with ``attempts >= max_attempts`` becomes
        KILLED, the others FAILED with ``run_at`` now. Returns how many.
        """
        ...

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest ``run_at`` of a PENDING or FAILED task, or None."""
        ...

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Return when new tasks may be ready on ``queue``, or after ``max_wait`` seconds.

        Spurious returns are fine; the memory driver wakes on insert, SQLite
        polls adaptively, PostgreSQL listens for notifications.
        """
        ...

    # -- inspection and administration --

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Return task counts by queue, then by status."""
        ...

    async def list_tasks(
        self, *, queue: str | None, status: Status | None, limit: int, offset: int
    ) -> list[StoredTask]:
        """Return tasks filtered by queue and status, newest id first, paged."""
        ...

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        ...

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed."""
        ...

    async def cancel(self, id: str) -> bool:
        """Make a PENDING or FAILED task CANCELLED; False if it is in another state."""
        ...

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``."""
        ...

    async def aclose(self) -> None:
        """Release the driver's resources (connections, threads)."""
        ...
