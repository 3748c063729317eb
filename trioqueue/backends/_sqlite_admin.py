"""The SQLite driver's operations off the claim/settle path, inherited by ``SqliteDriver``.

Reads, cancellation, the change and cancel signals, retention, paused queues
and the workers' registry.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._driver import RetentionRule, StoredTask, WorkerRecord
from .._task import Status
from . import _sqlite_statements as sql
from ._columns import status_of
from ._sqlite_thread import DIRECT_ROWS, Connection
from ._sqlite_wake import Waker

__all__ = ["SqliteAdministration"]

T = TypeVar("T")

_FINAL = (Status.DONE, Status.KILLED, Status.CANCELLED)
#: Seconds between two reads of the cancel count by a waiting extender, at
#: least: another process's cancellation reaches its holder within about this.
CANCEL_CHECK = 0.25


class SqliteAdministration:
    """Reads, cancellation, change signals, retention, pause and workers of ``SqliteDriver``.

    Change signals: this driver's own changes wake its waiters at once;
    another process's commit wakes them through the database file's wake-up
    (inotify on the WAL file, else polling: see ``_sqlite_wake``).
    """

    db: Connection
    _waker: Waker

    if TYPE_CHECKING:

        def now(self) -> float: ...

        async def _tx(
            self, fn: Callable[..., T], *args: Any, durable: bool = False, rows: int = 0
        ) -> T: ...

    def _init_administration(self) -> None:
        self._cancel = trio.Event()
        # The cancel count each Trio task (an extender) read at its last wait:
        # a cancellation committed between two waits still wakes the next one.
        self._cancels_seen: weakref.WeakKeyDictionary[trio.lowlevel.Task, int] = (
            weakref.WeakKeyDictionary()
        )
        # The data version and change count read with a Trio task's latest
        # ``get``/``get_many``: its next ``wait_for_change`` waits for a change
        # since that read, so one made in between is never missed.
        self._reads: weakref.WeakKeyDictionary[trio.lowlevel.Task, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )

    async def _read(self, fn: Callable[[sql.Conn], T], *, offload: bool = False) -> T:
        # A read that a follower may wait after: note what it saw.
        changes = self._waker.changes

        def run(conn: sql.Conn) -> tuple[int, T]:
            return sql.data_version(conn), fn(conn)

        version, out = await self.db.call(run, offload=offload)
        self._reads[trio.lowlevel.current_task()] = (version, changes)
        return out

    # -- signals --

    async def wait_for_change(self, max_wait: float) -> None:
        """Wait until a task may have changed status or progress, or ``max_wait`` seconds.

        A change made since this Trio task's last ``get`` or ``get_many`` counts:
        returns at once then. Changes by this driver wake the waiter at once;
        another process's commit wakes it as it wakes idle claimers (inotify on
        the WAL file, else polling up to ``poll_max``). Spurious returns happen
        (any commit by another connection is one).
        """
        seen = self._reads.pop(trio.lowlevel.current_task(), None)
        if seen is None:
            changes = self._waker.changes
            seen = (await self.db.call(sql.data_version), changes)
        version = partial(self.db.call, sql.data_version)
        await self._waker.wait_change(seen[0], seen[1], version, max_wait)

    async def wait_for_cancel(self, max_wait: float) -> None:
        """Wait until a task may have been flagged for cancellation, or ``max_wait`` seconds.

        This driver's own ``cancel`` wakes it at once. Another process's
        commits wake it through the file's wake-up (inotify on the WAL file,
        else polling): it then reads the cancel count that ``cancel`` moves
        (one row), at most every ``CANCEL_CHECK`` seconds, and returns once
        that count moved since this Trio task's previous wait.
        """
        task = trio.lowlevel.current_task()
        version = partial(self.db.call, sql.cancel_generation)
        seen = self._cancels_seen.get(task)
        if seen is None:
            seen = await version()
        self._cancels_seen[task] = await self._waker.wait_signal(
            self._cancel, seen, version, max_wait, every=CANCEL_CHECK
        )

    # -- reads --

    async def counts(self, queue: str | None) -> dict[str, dict[Status, int]]:
        """Count tasks per queue and status."""
        rows = await self.db.call(
            lambda c: c.execute(sql.COUNTS, {"queue": queue}).fetchall(), offload=True
        )
        out: dict[str, dict[Status, int]] = {}
        for q, status, n in rows:
            per = out.setdefault(q, {})
            st = status_of(status)
            per[st] = per.get(st, 0) + n
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
        params = {
            "queue": queue,
            "before": before,
            "limit": max(0, limit),
            "offset": max(0, offset),
        }

        def listing(c: sql.Conn) -> list[Any]:
            query = sql.LIST_TASKS if status is None else sql.LIST_TASKS_OF_STATUS[status]
            probe = sql.LIST_PROBES.get(status) if status is not None else None
            if probe is not None and c.execute(probe).fetchone()[0] > sql.LIST_PROBE:
                query = sql.LIST_TASKS_OF_STATUS_BY_ID[status]  # type: ignore[index]
            if before is not None:
                query = sql.BELOW[query]
            return c.execute(query, params).fetchall()

        rows = await self.db.call(listing, offload=True)
        return [sql.COLUMNS.shown(r) for r in rows]

    async def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        row = await self._read(lambda c: c.execute(sql.GET, (id,)).fetchone())
        return None if row is None else sql.COLUMNS.shown(row)

    async def get_many(self, ids: Sequence[str]) -> list[StoredTask]:
        """Return the stored tasks among ``ids``, in the order asked (missing ones left out)."""
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        arg = sql.ids_json(ids)
        rows = await self._read(
            lambda c: c.execute(sql.GET_MANY, (arg,)).fetchall(), offload=len(ids) > DIRECT_ROWS
        )
        by_id = {r[0]: r for r in rows}
        return [sql.COLUMNS.shown(by_id[id]) for id in ids if id in by_id]

    # -- administration --

    async def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task at once; flag a QUEUED or RUNNING one.

        A flagged task's holder learns of it at its next ``extend``; the same
        transaction moves the cancel count, so ``wait_for_cancel`` returns at
        once in this process and soon after the commit in the others.
        Whatever the holder then settles or releases, or a rescue finds, the
        task ends CANCELLED.
        """
        args = (self.now(), id)

        def run(conn: sql.Conn) -> list[Any]:
            rows = conn.execute(sql.CANCEL, args).fetchall()
            if rows and rows[0][0] != Status.CANCELLED.value:
                conn.execute(sql.SIGNAL_CANCEL)
            return rows

        rows = await self._tx(run, durable=True)
        if not rows:
            return False
        if rows[0][0] != Status.CANCELLED.value:
            self._signal_cancel()
        self._waker.changed()
        return True

    def _signal_cancel(self) -> None:
        # This process's waiters of ``wait_for_cancel``, those asleep on the
        # file watch too; the other processes' see the count move.
        self._cancel.set()
        self._cancel = trio.Event()
        self._waker.poke()

    async def retry_many(self, ids: Sequence[str]) -> int:
        """Retry the FAILED and KILLED tasks among ``ids`` (one transaction); returns how many."""
        if not ids:
            await trio.lowlevel.checkpoint()
            return 0
        args = (self.now(), sql.ids_json(ids))
        rows = await self._tx(
            lambda c: c.execute(sql.RETRY_MANY, args).fetchall(), durable=True, rows=len(ids)
        )
        if rows:
            self._waker.changed()
        self._waker.wake({r[0] for r in rows})
        return len(rows)

    def _cancel_in(self, conn: sql.Conn, ids: Sequence[str], now: float) -> tuple[int, bool]:
        """Cancel or flag the unfinished tasks among ``ids``: how many, and whether any flagged."""
        rows = conn.execute(sql.CANCEL_MANY, (now, sql.ids_json(ids))).fetchall()
        flagged = any(r[0] != Status.CANCELLED.value for r in rows)
        if flagged:
            conn.execute(sql.SIGNAL_CANCEL)  # the other processes' workers look again
        return len(rows), flagged

    async def cancel_many(self, ids: Sequence[str]) -> int:
        """Cancel the tasks among ``ids`` as ``cancel`` does, in one transaction."""
        if not ids:
            await trio.lowlevel.checkpoint()
            return 0
        now = self.now()
        n, flagged = await self._tx(
            lambda c: self._cancel_in(c, ids, now), durable=True, rows=len(ids)
        )
        if flagged:
            self._signal_cancel()
        if n:
            self._waker.changed()
        return n

    async def purge(self, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished before ``older_than``.

        The nodes of a RUNNING workflow run are kept (its joins read their results).
        """
        rows = await self._tx(
            lambda c: c.execute(sql.PURGE, (older_than,)).rowcount,
            durable=True,
            rows=DIRECT_ROWS + 1,  # any number of rows: on the thread
        )
        return int(rows)

    async def delete(self, ids: Sequence[str]) -> int:
        """Delete the tasks among ``ids`` that are not QUEUED or RUNNING; returns how many.

        The nodes of a RUNNING workflow run are kept (its joins read their results).
        """
        if not ids:
            await trio.lowlevel.checkpoint()
            return 0
        arg = sql.ids_json(ids)
        n = int(
            await self._tx(
                lambda c: c.execute(sql.DELETE, (arg,)).rowcount, durable=True, rows=len(ids)
            )
        )
        if n:
            self._waker.changed()
        return n

    async def finished_histogram(self, since: float, step: float) -> list[tuple[int, Status, int]]:
        """Count tasks finished since ``since`` per ``step``-second bucket and final status."""
        params = {"since": since, "step": step}
        rows = await self.db.call(
            lambda c: c.execute(sql.HISTOGRAM, params).fetchall(), offload=True
        )
        return [(int(b), status_of(s), int(n)) for b, s, n in rows]

    async def prune(
        self,
        queue: str | None,
        before: Mapping[Status, float],
        limit: int,
        workers_before: float,
    ) -> int:
        """Delete at most ``limit`` final tasks of ``queue`` finished before their status's cutoff.

        Only DONE, KILLED and CANCELLED in ``before`` are pruned, of ``queue``
        (None: any); the worker entries last seen before ``workers_before`` go
        in the same transaction.
        """
        cutoffs = {s.value: before.get(s) for s in _FINAL}
        given = [c for c in cutoffs.values() if c is not None]
        params = {
            **cutoffs,
            "queue": queue,
            "oldest": max(given, default=None),
            "limit": max(0, limit),
        }

        def run(conn: sql.Conn) -> int:
            n = conn.execute(sql.PRUNE, params).rowcount if given and limit > 0 else 0
            conn.execute(sql.PRUNE_WORKERS, (workers_before,))
            return n

        return await self._tx(run, rows=limit)

    async def pause(self, queue: str) -> None:
        """Pause ``queue``: claims on it give nothing until ``resume``."""
        await self._tx(lambda c: c.execute(sql.PAUSE, (queue,)), durable=True)

    async def resume(self, queue: str) -> None:
        """Resume ``queue`` and wake its waiting claimers (other processes see the commit)."""
        await self._tx(lambda c: c.execute(sql.RESUME, (queue,)), durable=True)
        self._waker.wake((queue,))

    async def paused(self) -> list[str]:
        """Return the paused queues, sorted."""
        rows = await self.db.call(lambda c: c.execute(sql.PAUSED).fetchall())
        return [r[0] for r in rows]

    # -- retention --

    async def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule, replacing the one stored."""
        row = (queue, rule.done, rule.killed, rule.cancelled)
        await self._tx(lambda c: c.execute(sql.SET_RETENTION, row), durable=True)

    async def clear_retention(self, queue: str) -> None:
        """Forget ``queue``'s stored rule."""
        await self._tx(lambda c: c.execute(sql.CLEAR_RETENTION, (queue,)), durable=True)

    async def retentions(self, queues: Sequence[str] | None) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues`` (None: every queue), by queue."""
        arg = None if queues is None else sql.ids_json(queues)
        rows = await self.db.call(lambda c: c.execute(sql.RETENTIONS, (arg,)).fetchall())
        return {q: RetentionRule(d, k, c) for q, d, k, c in rows}

    # -- the workers' registry --

    async def register_worker(self, worker: WorkerRecord) -> None:
        """Insert or refresh (by name) a worker's entry, ``last_seen`` now."""
        row = _worker_row(worker, self.now())
        await self._tx(lambda c: c.execute(sql.REGISTER_WORKER, row))

    async def remove_worker(self, name: str) -> None:
        """Delete a worker's entry."""
        await self._tx(lambda c: c.execute(sql.REMOVE_WORKER, (name,)))

    async def workers(self, seen_after: float) -> list[WorkerRecord]:
        """Return the entries seen after ``seen_after``, by name."""
        rows = await self.db.call(lambda c: c.execute(sql.WORKERS, (seen_after,)).fetchall())
        return [WorkerRecord(*r) for r in rows]


def _worker_row(worker: WorkerRecord, now: float) -> Iterable[Any]:
    return [now if name == "last_seen" else getattr(worker, name) for name in sql.WORKER_FIELDS]
