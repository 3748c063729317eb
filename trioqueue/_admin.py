"""Inspection and administration of a backend's store: counts, listings, retry, cancel, purge.

``Backend`` inherits these; each call goes to the driver once, with storage
errors retried a few times (``_retrying``), and shows records as ``Task``
objects whose args and results are decoded as plain data.
"""

from __future__ import annotations

from typing import Any

from ._bulk import FINAL, purge_finished
from ._codec import Codec
from ._driver import Driver, StoredTask, to_task
from ._durations import seconds
from ._lifecycle import WorkerInfo
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

        Returns:
          Whether the task was in a state that could be retried.
        """
        return await retrying(
            "retry a task", self.driver.retry, str(id), transient=self.transient, attempts=3
        )

    async def cancel_task(self, id: str) -> bool:
        """Cancel a task that is not final.

        A PENDING or FAILED task is CANCELLED at once. A QUEUED or RUNNING one
        is flagged in storage: the worker holding it cancels it within one
        lease extension (a third of its lease; on PostgreSQL at once, by a
        notification) and it ends CANCELLED, with no retry, even if its
        handler shields itself and returns.

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
