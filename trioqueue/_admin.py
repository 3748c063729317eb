"""Inspection and administration of a backend's store: counts, listings, retry, cancel, purge,
paused queues, the queues' retention and the workers.

``Backend`` inherits these; each call goes to the driver once, with storage
errors retried a few times (``_retrying``), and shows records as ``Task``
objects whose args and results are decoded as plain data.
"""

from __future__ import annotations

from typing import Any

from ._bulk import FINAL, purge_finished
from ._codec import Codec
from ._driver import Driver, RetentionRule, StoredTask, to_task
from ._durations import seconds
from ._lifecycle import Retention, WorkerInfo, retention_of, rule_in_effect, rule_of
from ._retrying import retrying
from ._sink import check_queue_name
from ._task import Status, Task

__all__ = ["WORKER_TTL", "Administration"]

#: Seconds after its last refresh that a worker's entry counts as dead.
WORKER_TTL = 30.0


class Administration:
    """The inspection and administration calls of ``Backend`` (see there)."""

    driver: Driver
    codec: Codec
    queue: str
    transient: tuple[type[BaseException], ...]
    retention_default: Retention | None

    def _to_task(self, rec: StoredTask) -> Task[Any]:
        # Args and result as plain data; shown raw when they do not decode:
        # one bad row must not break a listing.
        plain = self.codec.decoder(Any)
        args: Any = rec.payload
        result: Any = rec.result
        try:
            args = plain(rec.payload)
        except Exception:
            pass
        if rec.result is not None:
            try:
                result = plain(rec.result)
            except Exception:
                pass
        return to_task(rec, args, result)

    async def counts(self, *, queue: str | None = None) -> dict[str, dict[Status, int]]:
        """Return task counts per queue and status (all queues when ``queue`` is None).

        Raises:
          BackendError: if storage failed after retries.
        """
        return await retrying(
            "count tasks", self.driver.counts, queue, transient=self.transient, attempts=3
        )

    async def list_tasks(
        self,
        *,
        queue: str | None = None,
        status: Status | str | None = None,
        limit: int = 50,
        offset: int = 0,
        before: str | None = None,
    ) -> list[Task[Any]]:
        """Return tasks filtered by ``queue`` and ``status``, newest first, paged.

        ``before`` pages by key: only tasks whose id sorts before it (pass the
        last id of the previous page; fast on any number of tasks, unlike a
        large ``offset``).

        Raises:
          ValueError: for an unknown status.
          BackendError: if storage failed after retries.
        """
        st = None if status is None else Status(status)

        async def call() -> list[StoredTask]:
            return await self.driver.list_tasks(
                queue=queue, status=st, limit=limit, offset=offset, before=before
            )

        return [
            self._to_task(r)
            for r in await retrying("list tasks", call, transient=self.transient, attempts=3)
        ]

    async def get_task(self, id: str) -> Task[Any] | None:
        """Return the task with this id (args and result decoded as plain data), or None."""
        rec = await retrying(
            "read a task", self.driver.get, str(id), transient=self.transient, attempts=3
        )
        return None if rec is None else self._to_task(rec)

    async def retry_task(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now, with one more attempt allowed.

        A workflow's run record is never made PENDING: the retry of a killed
        or cancelled run (its id), or of a failed, killed or cancelled node
        of one, resumes the run: its unfinished nodes run again, the
        finished ones are not run again, and the run ends with its full
        result. A running or done run is not retried.

        Returns:
          Whether the task was in a state that could be retried (for a run:
          whether it was resumed; not while one of its nodes is still
          stopping, nor when none is left to run again).
        """
        return await retrying(
            "retry a task", self.driver.retry, str(id), transient=self.transient, attempts=3
        )

    async def cancel_task(self, id: str) -> bool:
        """Cancel a task that is not final.

        A PENDING or FAILED task is CANCELLED at once. A QUEUED or RUNNING one
        is flagged in storage and the worker holding it learns of it within
        one lease extension (a third of its lease; in its own process and on
        PostgreSQL at once, on SQLite from another process within about a
        quarter of a second): a task waiting in its prefetch buffer leaves it
        unstarted, a running one has its cancel scope cancelled. It ends
        CANCELLED, with no retry, even if its handler shields itself and returns.

        Returns:
          Whether the task was cancelled or flagged (False: final or unknown).
        """
        return await retrying(
            "cancel a task", self.driver.cancel, str(id), transient=self.transient, attempts=3
        )

    async def purge(self, *, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished over ``older_than`` seconds ago.

        Deletes in batches of ``BULK_PAGE`` tasks, each its own bounded
        statement (as retention does): any number of tasks is purged in
        bounded memory, and workers go on meanwhile.

        Returns:
          How many were deleted.
        """
        cutoff = self.driver.now() - seconds("older_than", older_than)
        return await purge_finished(self, dict.fromkeys(FINAL, cutoff))

    async def rescue(self) -> int:
        """Recover tasks of any queue whose lease expired; returns how many."""
        return await retrying(
            "rescue tasks", self.driver.rescue, None, transient=self.transient, attempts=3
        )

    def _queue_arg(self, queue: str | None) -> str:
        return self.queue if queue is None else check_queue_name(queue)

    async def pause(self, queue: str | None = None) -> None:
        """Pause a queue (default: this backend's): workers stop claiming from it.

        Every worker on it stops claiming at its next claim (within its poll
        interval); tasks running (and those already prefetched) finish.
        """
        await retrying(
            "pause a queue", self.driver.pause, self._queue_arg(queue),
            transient=self.transient, attempts=3,
        )  # fmt: skip

    async def resume(self, queue: str | None = None) -> None:
        """Resume a paused queue (default: this backend's); its workers claim again at once."""
        await retrying(
            "resume a queue", self.driver.resume, self._queue_arg(queue),
            transient=self.transient, attempts=3,
        )  # fmt: skip

    async def paused(self) -> list[str]:
        """Return the paused queues of the store, sorted."""
        return await retrying(
            "list paused queues", self.driver.paused, transient=self.transient, attempts=3
        )

    async def set_retention(self, queue: str, retention: Retention | None) -> None:
        """Store ``queue``'s retention in the store: every process on every host applies it.

        The workers of ``queue`` (and only they) prune its finished tasks by
        this rule from their next prune on (within about one
        ``Retention.interval``), whatever default their own process was
        opened with. Only the periods are stored (``done``, ``killed``,
        ``cancelled``); ``interval`` and ``batch`` stay each process's.

        Args:
          queue: The queue.
          retention: The rule, or None to keep the queue's finished tasks forever.

        Raises:
          TypeError: if ``retention`` is not a ``Retention`` or None, or
            ``queue`` is not a str.
          ValueError: for a negative period or an invalid queue name
            (nothing is stored).
          BackendError: if storage failed after retries.
        """
        rule = rule_of(retention)
        await retrying(
            "store a queue's retention", self.driver.set_retention, check_queue_name(queue), rule,
            transient=self.transient, attempts=3,
        )  # fmt: skip

    async def clear_retention(self, queue: str) -> None:
        """Forget ``queue``'s stored retention: it follows each process's default again.

        Raises:
          BackendError: if storage failed after retries.
        """
        await retrying(
            "forget a queue's retention", self.driver.clear_retention, check_queue_name(queue),
            transient=self.transient, attempts=3,
        )  # fmt: skip

    async def retention(self, queue: str | None = None) -> Retention | None:
        """Return the retention ``queue`` (default: this backend's) follows; None: kept forever.

        That is its stored rule (``set_retention``) or, when none is stored,
        this backend's default (``open_backend(..., retention=)``).

        Raises:
          BackendError: if storage failed after retries.
        """
        name = self._queue_arg(queue)
        stored = await self._stored_retention([name])
        default = self.retention_default
        return retention_of(rule_in_effect(stored.get(name), default), default)

    async def retentions(self) -> dict[str, Retention | None]:
        """Return the stored retention of every queue that has one, by queue.

        A queue not listed follows each process's default; None keeps forever.

        Raises:
          BackendError: if storage failed after retries.
        """
        stored = await self._stored_retention(None)
        return {q: retention_of(rule, self.retention_default) for q, rule in stored.items()}

    async def _stored_retention(self, queues: list[str] | None) -> dict[str, RetentionRule]:
        return await retrying(
            "read the queues' retention", self.driver.retentions, queues,
            transient=self.transient, attempts=3,
        )  # fmt: skip

    async def workers(self, *, stale_after: float = WORKER_TTL) -> list[WorkerInfo]:
        """Return the live workers of the store, by name.

        Workers refresh their entry with their lease extensions (at least
        every ``REGISTRY_EVERY`` seconds); an entry not refreshed for
        ``stale_after`` seconds is a dead worker's and is not listed (it is
        deleted by a later prune).
        """
        since = self.driver.now() - seconds("stale_after", stale_after)
        recs = await retrying(
            "list workers", self.driver.workers, since, transient=self.transient, attempts=3
        )
        return [WorkerInfo.from_record(r) for r in recs]
