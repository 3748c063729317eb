"""The storage-driver protocol: the few batch operations a backend implements.

Everything else (channels, batching, prefetch, lease extension, settling,
shutdown release, retries of storage errors) is the shared bridge in
``_backend.py``. See ``docs/drivers.md`` for the contract in prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec

from ._task import MAX_TIMESTAMP, Meta, Status, Task, TaskId, from_timestamp

__all__ = [
    "CANCEL_REQUESTED",
    "Driver",
    "Extended",
    "Outcome",
    "StoredTask",
    "WorkerRecord",
    "apply_outcome",
    "to_task",
]


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
    #: When the latest attempt began running (None until one did).
    started_at: float | None = None
    #: Name of the worker that claimed the latest attempt.
    worker: str | None = None
    #: The last progress a handler reported, as JSON text.
    progress: str | None = None
    #: How many times the task snoozed (``Snooze``); snoozes spend no attempt.
    snoozes: int = 0
    #: A cancellation was asked while the task was QUEUED or RUNNING: the
    #: worker holding it must cancel it, and whatever it settles, releases or
    #: a rescue finds, the task ends CANCELLED.
    cancel_requested: bool = False


@dataclass(slots=True)
class Extended:
    """What a lease extension found: the leases still held, and which of them must stop.

    Attributes:
      held: Ids whose lease is still held (the others were lost).
      cancel: Ids among ``held`` whose cancellation was requested.
    """

    held: list[str]
    cancel: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WorkerRecord:
    """A live worker as storage holds it (times are POSIX seconds, driver clock)."""

    name: str
    host: str
    pid: int
    queue: str
    concurrency: int
    running: int
    started_at: float
    last_seen: float = 0.0


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
        # Inline checks: this runs once per task a worker starts.
        None if not rec.created_at else _when(rec.created_at),
        None if rec.started_at is None else _when(rec.started_at),
        None if rec.finished_at is None else _when(rec.finished_at),
        rec.worker,
        None if rec.progress is None else _progress(rec.progress),
    )


def _when(ts: float | None) -> datetime | None:
    if ts is None or not 0.0 < ts <= MAX_TIMESTAMP:  # 0: never stored (an old record)
        return None
    return from_timestamp(ts)


def _progress(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:  # a hostile row must not break a listing
        return text


@dataclass(slots=True)
class Outcome:
    """How one claimed task ended, to be settled under its lease.

    ``status`` is DONE (with ``result``, and ``error`` when it carries a
    note such as why the result was not stored), FAILED (with ``error`` and ``delay``,
    the seconds until the next attempt), KILLED (with ``error``), CANCELLED,
    or PENDING for a snooze (``delay`` seconds; the attempt is given back:
    ``attempts`` - 1, ``snoozes`` + 1).
    A driver turns FAILED into KILLED itself when ``attempts >= max_attempts``,
    and any outcome into CANCELLED when the task's cancellation was requested.
    ``traceback`` is the failure's bounded traceback, stored with ``error``
    (None when the failure has none, e.g. ``Abort``). ``started_at`` is when
    the attempt began (stored when not None); ``progress`` the last progress
    reported and not yet stored (JSON text, stored when not None).
    """

    id: str
    status: Status
    result: bytes | None = None
    error: str | None = None
    delay: float = 0.0
    traceback: str | None = None
    started_at: float | None = None
    progress: str | None = None


def apply_outcome(task: StoredTask, outcome: Outcome, now: float) -> None:
    """Apply the settle rules of the contract to a record held in Python.

    For drivers that keep records as Python objects (the memory driver, a
    file-backed one): clears the lease; DONE stores the result; FAILED stores
    the error and moves ``run_at`` to ``now + delay``, or becomes KILLED when
    no attempt is left; KILLED and CANCELLED store the error; PENDING (a
    snooze) moves ``run_at`` and gives the attempt back. A task whose
    cancellation was requested ends CANCELLED whatever the outcome. Final
    statuses get ``finished_at``. The caller checks the lease first.
    """
    task.lease_token = task.lease_expires_at = None
    if outcome.started_at is not None:
        task.started_at = outcome.started_at
    if outcome.progress is not None:
        task.progress = outcome.progress
    status = outcome.status
    if status is Status.DONE and not task.cancel_requested:  # the common case, first
        task.status = status
        task.result = outcome.result
        if outcome.error is not None:  # a note: the result was not stored
            task.last_error = outcome.error
        task.finished_at = now
        return
    if task.cancel_requested:
        status = Status.CANCELLED
    elif status is Status.FAILED and task.attempts >= task.max_attempts:
        status = Status.KILLED
    task.status = status
    if status is Status.DONE:
        task.result = outcome.result
        if outcome.error is not None:  # a note: the result was not stored
            task.last_error = outcome.error
    elif status is Status.PENDING:
        task.attempts = max(0, task.attempts - 1)
        task.snoozes += 1
    elif status is Status.CANCELLED and task.cancel_requested:
        task.last_error = outcome.error or CANCEL_REQUESTED
        task.traceback = outcome.traceback
    else:
        task.last_error = outcome.error
        task.traceback = outcome.traceback
    if status in (Status.FAILED, Status.PENDING):
        task.run_at = now + max(0.0, outcome.delay)
    else:
        task.finished_at = now
        task.cancel_requested = False


#: ``last_error`` of a task cancelled while QUEUED or RUNNING (when its worker gave none).
CANCEL_REQUESTED = "Cancelled: cancellation requested while it was claimed"


class Driver(Protocol):
    """The batch operations a storage engine implements for the bridge.

    Every method may block and is called from Trio; drivers that call blocking
    libraries run them off the Trio thread. Errors are the driver's own
    (``sqlite3.Error``, ``psycopg.Error``...): the bridge retries them with
    backoff and translates them at its edge. Each method is atomic: it applies
    to every item or to none.

    Workflows: a driver that runs them also implements ``advance`` and keeps
    the end rule (``FlowDriver`` in ``trioqueue.drivers``, ``docs/drivers.md``).

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

    async def replace(self, tasks: Sequence[StoredTask]) -> int:
        """Store tasks, replacing a stored task of the same id that is final.

        A stored task that is DONE, KILLED or CANCELLED (in any queue) is
        deleted and the new one stored in the same transaction; one that is
        not final is kept and the new one skipped (``if_exists="replace_finished"``).

        Returns:
          How many were stored.
        """
        ...

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks of ``queue`` under a lease.

        Ready: PENDING or FAILED with ``run_at <= now``. Order: priority
        descending, then ``run_at``, then id. Each claimed task becomes QUEUED,
        its ``attempts`` grows by one, it gets the lease and ``worker`` is
        stored as its worker (None when empty). A paused queue (``pause``) gives nothing.
        Returns them in order.
        """
        ...

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING (a worker began them), ``started_at`` now."""
        ...

    async def extend(
        self,
        ids: Sequence[str],
        token: str,
        lease_seconds: float,
        progress: Mapping[str, str] | None = None,
    ) -> Extended:
        """Push the lease expiry of held tasks to ``lease_seconds`` from now.

        ``progress`` maps ids (among ``ids``) to the progress to store (JSON
        text), written in the same transaction for the ones still held.

        Returns:
          The ids whose lease is still held (the others were lost), and those
          of them whose cancellation was requested.
        """
        ...

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Record outcomes of leased tasks (compare-and-set on the lease).

        DONE stores the result (and ``error``, when given, as ``last_error``);
        FAILED stores the error and its traceback and sets ``run_at`` to now +
        delay, or becomes KILLED when ``attempts >= max_attempts``; KILLED and
        CANCELLED store the error and the traceback; PENDING (a snooze) sets
        ``run_at`` to now + delay, ``attempts`` - 1 and ``snoozes`` + 1. A
        task whose cancellation was requested becomes CANCELLED whatever the
        outcome (``last_error`` the outcome's error or ``CANCEL_REQUESTED``).
        Final statuses get ``finished_at`` now. ``started_at`` and
        ``progress`` are stored when not None. Each clears the lease. See
        ``apply_outcome``, the reference.

        Returns:
          The ids actually settled; an outcome whose lease was lost is dropped.
        """
        ...

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back unstarted: PENDING, lease cleared, attempt uncounted.

        A task whose cancellation was requested becomes CANCELLED instead.

        Returns:
          How many were released.
        """
        ...

    async def rescue(self, queue: str | None) -> int:
        """Recover tasks whose lease expired (their worker died or hung).

        The attempt counts: a task with ``attempts >= max_attempts`` becomes
        KILLED, the others FAILED with ``run_at`` now; one whose cancellation
        was requested becomes CANCELLED. Returns how many.
        """
        ...

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest ``run_at`` of a PENDING or FAILED task; None if none or paused."""
        ...

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Return when new tasks may be ready on ``queue``, or after ``max_wait`` seconds.

        Spurious returns are fine; the memory driver wakes on insert, SQLite
        polls adaptively, PostgreSQL listens for notifications. ``resume`` of
        the queue wakes it too.
        """
        ...

    async def wait_for_change(self, max_wait: float) -> None:
        """Return when some task may have changed status or progress, or after ``max_wait``.

        For ``wait_result`` and ``watch``, which then re-read the tasks they
        follow (``get_many``). Spurious returns are fine; a change made by
        another process is seen (PostgreSQL: a notification sent by settle,
        cancel and progress writes; SQLite: the file's wake-up).
        """
        ...

    async def wait_for_cancel(self, max_wait: float) -> None:
        """Return when a cancellation may have been requested (``cancel``), or after ``max_wait``.

        A consumer's extender waits on it between extensions, so that a
        cancellation reaches the worker holding the task sooner than the next
        extension where storage can signal it (PostgreSQL: a notification;
        memory: an event). Spurious returns are fine.
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

    async def get_many(self, ids: Sequence[str]) -> list[StoredTask]:
        """Return the stored tasks among ``ids`` (one batched read; missing ids are left out)."""
        ...

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed."""
        ...

    async def cancel(self, id: str) -> bool:
        """Cancel a task that is not final.

        PENDING or FAILED: CANCELLED at once (``finished_at`` now). QUEUED or
        RUNNING: ``cancel_requested`` is set (and, where storage can, the
        workers are signalled: see ``wait_for_cancel``). Returns False for a
        final or unknown task.
        """
        ...

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``."""
        ...

    async def prune(self, before: Mapping[Status, float], limit: int, workers_before: float) -> int:
        """Delete at most ``limit`` final tasks whose ``finished_at`` is before ``before[status]``.

        Only the statuses in ``before`` are pruned (retention). Also deletes
        the worker entries last seen before ``workers_before``. Returns how
        many tasks were deleted.
        """
        ...

    async def pause(self, queue: str) -> None:
        """Pause ``queue``: claims on it give nothing until ``resume``."""
        ...

    async def resume(self, queue: str) -> None:
        """Resume a paused ``queue`` and wake the consumers waiting on it."""
        ...

    async def paused(self) -> list[str]:
        """Return the paused queues, sorted."""
        ...

    async def register_worker(self, worker: WorkerRecord) -> None:
        """Insert or refresh (by name) a worker's entry, ``last_seen`` now."""
        ...

    async def remove_worker(self, name: str) -> None:
        """Delete a worker's entry (it stopped)."""
        ...

    async def workers(self, seen_after: float) -> list[WorkerRecord]:
        """Return the entries seen after ``seen_after`` (the live workers), by name."""
        ...

    async def aclose(self) -> None:
        """Release the driver's resources (connections, threads)."""
        ...
