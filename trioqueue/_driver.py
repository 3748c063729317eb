"""The storage-driver protocol: the few batch operations a backend implements.

Everything else (channels, batching, prefetch, lease extension, settling,
shutdown release, retries of storage errors) is the shared bridge in
``_backend.py``. See ``docs/drivers.md`` for the contract in prose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ._records import (
    CANCEL_REQUESTED,
    Extended,
    Outcome,
    RetentionRule,
    StoredTask,
    WorkerRecord,
    apply_outcome,
    to_task,
)
from ._schedule._record import ScheduleRecord
from ._task import Status

__all__ = [
    "CANCEL_REQUESTED",
    "Driver",
    "Extended",
    "Outcome",
    "RetentionRule",
    "StoredTask",
    "WorkerRecord",
    "apply_outcome",
    "to_task",
]


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

        Spurious returns are fine; the memory driver wakes on insert, SQLite polls
        adaptively, PostgreSQL listens for notifications. ``resume`` of the queue wakes it too.
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
        memory: an event; SQLite: the file's wake-up, then a count that
        ``cancel`` moves). Spurious returns are fine.
        """
        ...

    # -- inspection and administration --

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Return task counts by queue, then by status."""
        ...

    async def list_tasks(
        self,
        *,
        queue: str | None,
        status: Status | None,
        limit: int,
        offset: int,
        before: str | None = None,
    ) -> list[StoredTask]:
        """Return tasks by queue, status and ids below ``before``; newest first, paged."""
        ...

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        ...

    async def get_many(self, ids: Sequence[str]) -> list[StoredTask]:
        """Return the stored tasks among ``ids`` (one batched read; missing ids are left out)."""
        ...

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed.

        A workflow's run record is never made PENDING: a driver that runs
        workflows resumes the run instead (see ``FlowDriver``).
        """
        ...

    async def cancel(self, id: str) -> bool:
        """Cancel a task that is not final.

        PENDING or FAILED: CANCELLED at once (``finished_at`` now). QUEUED or
        RUNNING: ``cancel_requested`` is set (and, where storage can, the
        workers are signalled: see ``wait_for_cancel``). Returns False for a
        final or unknown task.
        """
        ...

    async def retry_many(self, ids: Sequence[str]) -> int:
        """Retry the tasks among ``ids`` as ``retry`` does, in one bounded write; how many.

        A bulk operation's page: the caller bounds ``ids`` (``BULK_PAGE``).
        The tasks of workflow runs (their records and nodes) are left out:
        ``retry`` of one by id resumes its run.
        """
        ...

    async def cancel_many(self, ids: Sequence[str]) -> int:
        """Cancel the tasks among ``ids`` as ``cancel`` does, in one bounded write; how many.

        The workers holding the flagged ones are signalled as by ``cancel``.
        """
        ...

    async def delete(self, ids: Sequence[str]) -> int:
        """Delete the tasks among ``ids`` that are not QUEUED or RUNNING; returns how many."""
        ...

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``.

        A driver that runs workflows keeps the nodes of a RUNNING run (``FlowDriver``).
        """
        ...

    async def prune(
        self,
        queue: str | None,
        before: Mapping[Status, float],
        limit: int,
        workers_before: float,
    ) -> int:
        """Delete at most ``limit`` final tasks of ``queue`` finished before ``before[status]``.

        Only the statuses in ``before`` are pruned, and only tasks of ``queue``
        (None: of every queue, for an operator's purge; a worker's retention
        always names its own queue). A driver that runs workflows keeps the
        nodes of a RUNNING run, as ``purge`` does. Also deletes the worker
        entries last seen before ``workers_before``. Returns how many tasks
        were deleted.
        """
        ...

    async def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule, replacing the one stored (if any)."""
        ...

    async def clear_retention(self, queue: str) -> None:
        """Forget ``queue``'s stored rule (it follows each process's default again)."""
        ...

    async def retentions(self, queues: Sequence[str] | None) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues`` (None: of every queue), by queue.

        A queue with no stored rule is left out: absent and "keep everything"
        (a rule of three Nones) are different answers.
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

    async def record_schedule(self, rec: ScheduleRecord) -> None:
        """Upsert a schedule by name (``updated_at`` now); an older last tick changes nothing."""
        ...

    async def schedules(self) -> list[ScheduleRecord]:
        """Return the schedules' records, by name (see ``merge_schedule`` for the upsert rule)."""
        ...

    async def forget_schedule(self, name: str, updated_at: float) -> bool:
        """Delete the record ``name`` unless it was written after ``updated_at``; True if deleted.

        Workers delete the stale records of their queue with it; a record
        that a worker wrote again meanwhile stays.
        """
        ...

    async def aclose(self) -> None:
        """Release the driver's resources (connections, threads)."""
        ...
