"""The PostgreSQL driver's inspection and administration: reads, replacing pushes, retries,
cancellations, retention, paused queues and the workers' registry (``PostgresDriver``
inherits them). Each call is one statement (``_pg_admin_sql``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._driver import RetentionRule, StoredTask, WorkerRecord
from .._flow._resume import RetryKind, retry_kind, run_of
from .._task import Status
from ._columns import meta_or_none, status_of
from ._pg_admin_sql import AdminStatements
from ._pg_native import Row
from ._pg_schema import COLUMNS
from ._pg_statements import Statements

__all__ = ["COMPACT_AFTER", "PostgresAdministration"]

#: Ledger rows of finished counts past which a read of ``counts`` folds them.
COMPACT_AFTER = 200


class PostgresAdministration:
    """Inspection and administration of ``PostgresDriver``: one statement per call.

    The calls that change tasks run shielded (bounded), so that a caller
    cancelled meanwhile never leaves a change committed behind its back
    unknown; the ones that change status NOTIFY the change channel, a
    cancellation of a claimed task the cancel channel.
    """

    _sql: Statements
    _admin: AdminStatements

    if TYPE_CHECKING:

        def now(self) -> float: ...

        async def _fetch(
            self, query: Any, params: Any, *, shield: bool, durable: bool = True
        ) -> list[Row]: ...

        def _signal_change(self) -> None: ...

        def _signal_cancel(self) -> None: ...

        def _notified(self, queue: str) -> None: ...

    async def queues_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Status]]:
        """Return the queue and status of each stored task among ``ids``."""
        rows = await self._fetch(self._admin.queues_of, {"ids": list(ids)}, shield=False)
        return {id: (q, status_of(st)) for id, q, st in rows}

    async def replace(self, tasks: Sequence[StoredTask]) -> int:
        """Store tasks, overwriting stored final ones of the same id (one statement).

        A stored task that is not final is kept and the new one skipped; a
        second record of one id in ``tasks`` is skipped.
        """
        if not tasks:
            return 0
        params = self._admin.replace_params(tasks)
        n = int((await self._fetch(self._admin.replace, params, shield=True))[0][0])
        for q in {t.queue for t in tasks}:
            self._notified(q)
        return n

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Count tasks per queue and status.

        Unfinished tasks are counted through their partial indexes; finished
        ones are summed from the ledger the triggers of schema version 11 keep.
        Once a read has summed more than ``COMPACT_AFTER`` ledger rows, it
        folds them into one per queue and status.
        """
        out: dict[str, dict[Status, int]] = {}
        ledger = 0
        for q, st, n, rows in await self._fetch(self._admin.counts, {"queue": queue}, shield=False):
            ledger += int(rows)
            if int(n):
                per = out.setdefault(q, {})
                per[status_of(st)] = per.get(status_of(st), 0) + int(n)
        if ledger > COMPACT_AFTER:
            await self._compact_finished()
        return out

    async def _compact_finished(self) -> None:
        # Fold the ledger of finished counts if it holds more than COMPACT_AFTER rows.
        params = {"lock": self._admin.compact_lock, "after": COMPACT_AFTER}
        await self._fetch(self._admin.compact_finished, params, shield=True, durable=False)

    async def list_tasks(
        self,
        *,
        queue: str | None,
        status: Status | None,
        limit: int,
        offset: int,
        before: str | None = None,
    ) -> list[StoredTask]:
        """List tasks, newest id first, paged (ids below ``before`` when given)."""
        params = {
            "queue": queue,
            "before": before,
            "limit": max(0, limit),
            "offset": max(0, offset),
        }
        query = (
            self._admin.list_tasks if status is None else self._admin.list_tasks_of_status[status]
        )
        rows = await self._fetch(query, params, shield=False)
        return [COLUMNS.shown(r) for r in rows]

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        rows = await self._fetch(self._admin.get, {"id": id}, shield=False)
        return COLUMNS.shown(rows[0]) if rows else None

    async def get_many(self, ids: Sequence[str]) -> list[StoredTask]:
        """Return the stored tasks among ``ids``, in the order of ``ids`` (one statement)."""
        if not ids:
            return []
        rows = await self._fetch(self._admin.get_many, {"ids": list(ids)}, shield=False)
        found = {r.id: r for r in map(COLUMNS.shown, rows)}
        return [rec for id in dict.fromkeys(ids) if (rec := found.get(id)) is not None]

    async def retry(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now with one more attempt allowed.

        A run record, or a node of an ended run, resumes its run instead
        (``FlowDriver``): ``retry_kind`` decides on what a read finds, and
        the statement then run holds its own conditions.
        """
        rows = await self._fetch(self._admin.retry_read, {"id": id}, shield=False)
        if not rows:
            return False
        status, meta_text, run_status = rows[0]
        meta = meta_or_none(meta_text)
        run = None if run_status is None else status_of(run_status)
        kind = retry_kind(id, status_of(status), meta, run)
        of = run_of(id, meta)
        if kind is RetryKind.NO or (kind is RetryKind.RUN and of is None):
            return False
        params = {
            "id": id,
            "now": self.now(),
            "channel": self._sql.channel,
            "change": self._sql.change_channel,
        }
        if kind is RetryKind.RUN:
            assert of is not None
            params["run"] = of[0]
        query = self._admin.retry if kind is RetryKind.TASK else self._admin.resume_run
        rows = await self._fetch(query, params, shield=True)
        if rows[0][0]:
            self._signal_change()
        return bool(rows[0][0])

    async def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task at once; flag a QUEUED or RUNNING one and NOTIFY.

        Returns False for a final or unknown task.
        """
        params = self._admin.cancel_params(id, self.now())
        rows = await self._fetch(self._admin.cancel, params, shield=True)
        if not rows[0][0]:
            return False
        self._signal_cancel()  # this process's workers need not wait for the round trip
        self._signal_change()
        return True

    async def retry_many(self, ids: Sequence[str]) -> int:
        """Retry the FAILED and KILLED tasks among ``ids`` (one statement); returns how many."""
        if not ids:
            return 0
        params = {
            "ids": list(ids),
            "now": self.now(),
            "channel": self._sql.channel,
            "change": self._sql.change_channel,
        }
        n = int((await self._fetch(self._admin.retry_many, params, shield=True))[0][0])
        if n:
            self._signal_change()
        return n

    async def cancel_many(self, ids: Sequence[str]) -> int:
        """Cancel or flag the unfinished tasks among ``ids`` as ``cancel`` does (one statement).

        The flagged ones go to the cancel channel in one notification, the
        others to the change channel in one: the workers holding the flagged
        tasks stop them at once.
        """
        if not ids:
            return 0
        params = {
            "ids": list(ids),
            "now": self.now(),
            "change": self._sql.change_channel,
            "cancel": self._sql.cancel_channel,
        }
        rows = await self._fetch(self._admin.cancel_many, params, shield=True)
        n, flagged = int(rows[0][0]), int(rows[0][1])
        if flagged:
            self._signal_cancel()  # this process's workers need not wait for the round trip
        if n:
            self._signal_change()
        return n

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``.

        The nodes of a RUNNING workflow run are kept (its joins read their results).
        """
        rows = await self._fetch(self._admin.purge, {"before": older_than}, shield=True)
        return int(rows[0][0])

    async def delete(self, ids: Sequence[str]) -> int:
        """Delete the tasks among ``ids`` that are not QUEUED or RUNNING; returns how many.

        The nodes of a RUNNING workflow run are kept (its joins read their results).
        """
        if not ids:
            return 0
        params = {"ids": list(ids), "change": self._sql.change_channel}
        n = int((await self._fetch(self._admin.delete, params, shield=True))[0][0])
        if n:
            self._signal_change()
        return n

    async def finished_histogram(self, since: float, step: float) -> list[tuple[int, Status, int]]:
        """Count tasks finished since ``since`` per ``step``-second bucket and final status."""
        params = {"since": since, "step": step}
        rows = await self._fetch(self._admin.finished_histogram, params, shield=False)
        return [(int(b), status_of(s), int(n)) for b, s, n in rows]

    async def prune(
        self,
        queue: str | None,
        before: Mapping[Status, float],
        limit: int,
        workers_before: float,
    ) -> int:
        """Delete at most ``limit`` final tasks of ``queue`` finished before their status's cutoff.

        Only tasks of ``queue`` (None: any queue). Also deletes the worker
        entries last seen before ``workers_before``, and folds the ledger of
        finished counts when it has grown (so that a store nobody reads the
        depth of keeps it small). Returns how many tasks were deleted.
        """
        params = self._admin.prune_params(queue, before, limit, workers_before)
        rows = await self._fetch(self._admin.prune, params, shield=True)
        await self._compact_finished()
        return int(rows[0][0])

    async def pause(self, queue: str) -> None:
        """Pause ``queue``: claims on it give nothing until ``resume``."""
        await self._fetch(self._admin.pause, {"queue": queue}, shield=True)

    async def resume(self, queue: str) -> None:
        """Resume ``queue`` and NOTIFY its wake-up channel: waiting consumers claim at once."""
        params = {"queue": queue, "channel": self._sql.channel}
        await self._fetch(self._admin.resume, params, shield=True)
        self._notified(queue)

    async def paused(self) -> list[str]:
        """Return the paused queues, sorted."""
        return [str(q) for (q,) in await self._fetch(self._admin.paused, None, shield=False)]

    async def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule, replacing the one stored."""
        params = {"queue": queue, "done": rule.done, "killed": rule.killed}
        params["cancelled"] = rule.cancelled
        await self._fetch(self._admin.set_retention, params, shield=True)

    async def clear_retention(self, queue: str) -> None:
        """Forget ``queue``'s stored rule."""
        await self._fetch(self._admin.clear_retention, {"queue": queue}, shield=True)

    async def retentions(self, queues: Sequence[str] | None) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues`` (None: every queue), by queue."""
        params = {"queues": None if queues is None else list(queues)}
        rows = await self._fetch(self._admin.retentions, params, shield=False)
        return {str(q): RetentionRule(*map(_seconds, (d, k, c))) for q, d, k, c in rows}

    async def register_worker(self, worker: WorkerRecord) -> None:
        """Insert or refresh (by name) a worker's entry, ``last_seen`` now."""
        params = self._admin.worker_params(worker, self.now())
        await self._fetch(self._admin.register_worker, params, shield=True, durable=False)

    async def remove_worker(self, name: str) -> None:
        """Delete a worker's entry (it stopped)."""
        await self._fetch(self._admin.remove_worker, {"name": name}, shield=True)

    async def workers(self, seen_after: float) -> list[WorkerRecord]:
        """Return the entries seen after ``seen_after`` (the live workers), by name."""
        rows = await self._fetch(self._admin.workers, {"after": seen_after}, shield=False)
        return [
            WorkerRecord(str(n), str(h), int(p), str(q), int(c), int(r), float(s), float(seen))
            for n, h, p, q, c, r, s, seen in rows
        ]


def _seconds(value: object) -> float | None:
    return None if value is None else float(str(value))
