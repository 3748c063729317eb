"""``PostgresDriver``: the driver protocol on PostgreSQL, one statement per batch operation.

Claims use ``FOR UPDATE SKIP LOCKED``; start, extend, settle and release are
compare-and-set on the lease; idle workers, result waiters and the workers
holding a task whose cancellation was requested wake with LISTEN/NOTIFY (one
LISTEN connection, ``_pg_listen``). Each call is one statement (its own
transaction) through a statement runner (``_pg_runner``); the administration
calls are in ``_pg_admin``. ``postgres.py`` wraps it in the public backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
import trio

from .._driver import CANCEL_REQUESTED, Extended, Outcome, StoredTask
from .._task import Status
from ._pg_admin import PostgresAdministration
from ._pg_admin_sql import AdminStatements
from ._pg_copy import binary_copy
from ._pg_flows import PostgresFlows
from ._pg_listen import Listener
from ._pg_native import Row
from ._pg_runner import Runner
from ._pg_schedules import PostgresSchedules
from ._pg_schema import COLUMNS, check_identifier
from ._pg_statements import Statements

__all__ = ["COPY_MIN", "SYNCHRONOUS_MODES", "PostgresDriver"]

log = logging.getLogger("trioqueue.backends.postgres")

T = TypeVar("T")

#: Inserts of this many tasks or more go by COPY.
COPY_MIN = 64

#: The values of ``synchronous=``.
SYNCHRONOUS_MODES = ("normal", "full")


def written(rec: StoredTask, outcome: Outcome) -> bool:
    """Whether ``rec`` shows ``outcome`` as a settle writes it.

    FAILED may become KILLED, and any outcome CANCELLED (a cancellation was requested).
    """
    if rec.status is Status.CANCELLED:
        return rec.last_error in (outcome.error, outcome.error or CANCEL_REQUESTED)
    if outcome.status is Status.PENDING:
        return rec.status is Status.PENDING
    if outcome.status is Status.DONE:
        return rec.status is Status.DONE and rec.result == outcome.result
    if outcome.status is Status.FAILED:
        return rec.status in (Status.FAILED, Status.KILLED) and rec.last_error == outcome.error
    return rec.status is outcome.status and rec.last_error == outcome.error


class PostgresDriver(PostgresFlows, PostgresAdministration, PostgresSchedules):
    """A storage driver on PostgreSQL: one statement per batch operation.

    Made by ``PostgresBackend.open``; it needs a ``Runner`` and, when
    ``listen`` is true, a nursery for its LISTEN task (``attach``), which
    starts with the first wait that needs it (``claim`` and ``wait_for_tasks``:
    the wake-up channel; ``wait_for_change``: the change and cancel channels;
    ``wait_for_cancel``: the cancel channel), all on one connection: a
    process that only pushes never listens.

    Args:
      runner: Runs the statements.
      schema: The schema holding the tables (validated identifier).
      clock: A function returning POSIX seconds (default ``time.time``).
      listen: Wait for NOTIFY (true) or poll (false).
      shield_seconds: Longest time a mutating call finishes after a cancellation.
      synchronous: ``"normal"`` (the default): pushes and administration
        commit durably, while a worker's claims, leases and outcomes may be
        lost by a server crash (their tasks then run again: at-least-once
        holds; releases at shutdown stay durable); ``"full"``: every statement
        commits durably.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        schema: str = "trioqueue",
        clock: Callable[[], float] | None = None,
        listen: bool = True,
        shield_seconds: float = 30.0,
        synchronous: str = "normal",
    ) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self._runner = runner
        # Outcomes whose settle got no answer, by id: (token, outcome).
        self._unsure: dict[str, tuple[str, Outcome]] = {}
        self.schema = check_identifier(schema)
        self._sql = Statements(schema)
        self._admin = AdminStatements(schema, self._sql)
        self._clock = clock if clock is not None else time.time
        self.listening = listen
        self._shield_seconds = shield_seconds
        self.synchronous = synchronous
        # Whether a worker's own writes wait for the disk.
        self._worker_durable = synchronous == "full"
        self._wake: dict[str, trio.Event] = {}
        self._change = trio.Event()
        self._cancel = trio.Event()
        self._listener = Listener(runner.listen, self._on_notify, self._wake_all, enabled=listen)
        #: NOTIFY messages received since open (for statistics and tests).
        self.notifications = 0

    def now(self) -> float:
        """Return the clock given at construction (default: ``time.time()``)."""
        return self._clock()

    # -- plumbing --

    async def _fetch(
        self, query: Any, params: Any, *, shield: bool, durable: bool = True
    ) -> list[Row]:
        if not shield:
            return await self._runner.fetch(query, params)
        return await self._shielded(self._runner.fetch, query, params, durable=durable)

    async def _shielded(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        # A statement that changes state runs to its end even when the caller is
        # cancelled (bounded): its effect is then known to the caller instead of
        # being committed behind its back.
        # (A deadline given at construction costs less than one set once entered.)
        deadline = trio.current_time() + self._shield_seconds
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            out = await fn(*args, **kwargs)
        if scope.cancelled_caught:
            raise TimeoutError(f"statement did not finish within {self._shield_seconds}s")
        return out

    async def _work(self, query: Any, params: Any) -> list[Row]:
        """Run a statement of a worker's own (claim, lease, outcome), shielded."""
        return await self._fetch(query, params, shield=True, durable=self._worker_durable)

    def _event(self, queue: str) -> trio.Event:
        ev = self._wake.get(queue)
        if ev is None:
            ev = self._wake[queue] = trio.Event()
        return ev

    def _notified(self, queue: str) -> None:
        ev = self._wake.get(queue)
        if ev is not None:
            ev.set()

    def _signal_change(self) -> None:
        # Waiters re-read what they follow; a fresh event for the next change.
        self._change.set()
        self._change = trio.Event()

    def _signal_cancel(self) -> None:
        self._cancel.set()
        self._cancel = trio.Event()

    def _on_notify(self, channel: str, payload: str) -> None:
        self.notifications += 1
        if channel == self._sql.channel:
            self._notified(payload)
        elif channel == self._sql.cancel_channel:
            self._signal_cancel()
            self._signal_change()  # a cancellation requested is a change too
        elif channel == self._sql.change_channel:
            self._signal_change()

    def _wake_all(self) -> None:
        # Listening began, or its connection was lost: notifications may have
        # been missed, so every waiter looks again.
        for ev in self._wake.values():
            ev.set()
        self._signal_change()
        self._signal_cancel()

    def attach(self, nursery: trio.Nursery) -> None:
        """Give the driver the nursery its LISTEN task will run in (when ``listen`` is true)."""
        self._listener.attach(nursery)

    # -- the Driver protocol --

    async def insert(self, tasks: Sequence[StoredTask]) -> int:
        """Store new tasks (one statement; existing ids skipped) and NOTIFY their queues."""
        if not tasks:
            return 0
        queues = {t.queue for t in tasks}
        n = -1
        if len(tasks) >= COPY_MIN:
            # Many new ids at once (a bulk push): COPY them in. An id that
            # exists already fails the COPY, and the statement below skips it.
            try:
                data = binary_copy(tasks)
                notify = self._sql.notify(queues)
                await self._shielded(self._runner.copy_in, self._sql.copy, data, notify)
                n = len(tasks)
            except psycopg.errors.UniqueViolation:
                pass
        if n < 0:
            if len(tasks) == 1:
                one = self._sql.insert_one_params(tasks[0])
                n = len(await self._fetch(self._sql.insert_one, one, shield=True))
            else:
                many = self._sql.insert_params(tasks)
                n = int((await self._fetch(self._sql.insert, many, shield=True))[0][0])
        for q in queues:
            self._notified(q)  # wake local waiters without waiting for the round trip
        return n

    async def insert_on(
        self,
        conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any],
        tasks: Sequence[StoredTask],
    ) -> int:
        """Store new tasks with the caller's connection, inside the caller's transaction.

        The statement of ``insert``: the tasks (and their queues' NOTIFY)
        appear when the caller commits. ``conn`` is a sync ``Connection`` (run
        in a worker thread) or an ``AsyncConnection`` (run on this task's
        trio-asyncio loop, else the runner's). Returns how many were stored.

        Raises:
          TypeError: if ``conn`` is not a psycopg connection, or is an
            ``AsyncConnection`` with no trio-asyncio loop to run on.
          psycopg.Error: if the statement failed (not translated).
        """
        rows = await self._runner.fetch_on(conn, self._sql.insert, self._sql.insert_params(tasks))
        return int(rows[0][0])

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[StoredTask]:
        """Claim up to ``limit`` ready tasks (``FOR UPDATE SKIP LOCKED``) in order.

        A paused queue gives nothing (checked in the same statement).
        """
        self._event(queue)
        if not self._listener.listens(self._sql.channel):
            # A consumer: listen before its first claim, so that no push made
            # after a claim found nothing goes unheard (shielded like the claim:
            # a claim under a cancelled scope still runs).
            with trio.move_on_after(self._shield_seconds, shield=True):
                await self._listener.ensure(self._sql.channel)
        if limit <= 0:
            return []
        now = self.now()
        params = {
            "queue": queue,
            "now": now,
            "limit": limit,
            "token": token,
            "expires": now + lease_seconds,
            "worker": worker or None,
        }
        recs, unreadable = COLUMNS.claimed(await self._work(self._sql.claim, params))
        if unreadable:
            # Claimed rows that cannot be read: KILLED with their reason at once,
            # under the claim's lease (if this fails, their lease expires as usual).
            try:
                await self.settle(unreadable, token)
            except Exception:
                log.exception("could not settle %d unreadable row(s)", len(unreadable))
            for o in unreadable:
                log.error("task %s killed: %s", o.id, o.error)
        recs.sort(key=lambda t: (-t.priority, t.run_at, t.id))
        return recs

    async def start(self, ids: Sequence[str], token: str) -> None:
        """Mark leased QUEUED tasks RUNNING, ``started_at`` now."""
        if ids:
            params = {"ids": list(ids), "token": token, "now": self.now()}
            await self._work(self._sql.start, params)
            self._signal_change()

    async def extend(
        self,
        ids: Sequence[str],
        token: str,
        lease_seconds: float,
        progress: Mapping[str, str] | None = None,
    ) -> Extended:
        """Extend the leases still held, storing their ``progress``, in one statement.

        Progress stored is NOTIFYed on the change channel.

        Returns:
          The ids still held, and those of them whose cancellation was requested.
        """
        if not ids:
            return Extended([])
        params: dict[str, Any] = {
            "ids": list(ids),
            "token": token,
            "expires": self.now() + lease_seconds,
        }
        values = [progress.get(i) for i in ids] if progress else []
        if any(v is not None for v in values):
            params["progress"] = values
            params["change"] = self._sql.change_channel
            rows = await self._work(self._sql.extend_progress, params)
            self._signal_change()
        else:
            rows = await self._work(self._sql.extend, params)
        kept = {r[0]: bool(r[1]) for r in rows}
        return Extended([i for i in ids if i in kept], [i for i in ids if kept.get(i, False)])

    async def settle(self, outcomes: Sequence[Outcome], token: str) -> list[str]:
        """Apply outcomes whose lease is still held (compare-and-set), one statement.

        The rules are ``apply_outcome``'s; the settled ids are NOTIFYed on the
        change channel, the queues of rescheduled tasks on their wake-up channel.
        """
        if not outcomes:
            return []
        params = self._sql.settle_params(outcomes, token, self.now())
        try:
            rows = await self._work(self._sql.settle, params)
        except BaseException:
            # The reply may have been lost after the commit (a server crash, a
            # broken connection): remember the batch, so that its retry can
            # tell its own outcomes, already written, from lost leases.
            self._unsure.update((o.id, (token, o)) for o in outcomes)
            raise
        done = set(rows[0][0] or ())
        applied = [o.id for o in outcomes if o.id in done]
        if self._unsure:
            if len(applied) < len(outcomes):
                applied += await self._settled_before(outcomes, done, token)
            for o in outcomes:
                self._unsure.pop(o.id, None)
        if applied:
            self._signal_change()
        return applied

    async def _settled_before(
        self, outcomes: Sequence[Outcome], done: set[str], token: str
    ) -> list[str]:
        """Return the ids among ``outcomes`` whose earlier, unanswered try was committed."""
        found = []
        for o in outcomes:
            sent = self._unsure.get(o.id)
            if o.id in done or sent is None or sent[0] != token or sent[1] != o:
                continue
            rec = await self.get(o.id)
            if rec is not None and rec.lease_token is None and written(rec, o):
                found.append(o.id)
        return found

    async def release(self, ids: Sequence[str], token: str) -> int:
        """Give leased tasks back as PENDING, uncounting their attempt (CANCELLED if asked)."""
        if not ids:
            return 0
        params = {
            "ids": list(ids),
            "token": token,
            "now": self.now(),
            "channel": self._sql.channel,
            "change": self._sql.change_channel,
        }
        rows = await self._fetch(self._sql.release, params, shield=True)
        n = int(rows[0][0])
        if n:
            self._signal_change()
        return n

    async def rescue(self, queue: str | None) -> int:
        """Recover expired leases of ``queue`` (or every queue): KILLED, FAILED now or CANCELLED."""
        params = {
            "queue": queue,
            "now": self.now(),
            "channel": self._sql.channel,
            "change": self._sql.change_channel,
        }
        rows = await self._work(self._sql.rescue, params)
        n = int(rows[0][0])
        if n:
            self._signal_change()
        return n

    async def next_run_at(self, queue: str) -> float | None:
        """Return the earliest run_at of a PENDING or FAILED task of ``queue``; None if paused."""
        rows = await self._fetch(self._sql.next_run_at, {"queue": queue}, shield=False)
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def wait_for_tasks(self, queue: str, max_wait: float) -> None:
        """Wait for a NOTIFY on ``queue`` (or, polling, just ``max_wait`` seconds)."""
        ev = self._event(queue)
        with trio.move_on_after(max_wait):
            await self._listener.ensure(self._sql.channel)
            await ev.wait()
        if ev.is_set() and self._wake.get(queue) is ev:
            self._wake[queue] = trio.Event()

    async def wait_for_change(self, max_wait: float) -> None:
        """Wait for a NOTIFY of a change (settle, cancel, progress), or ``max_wait`` seconds.

        The first call LISTENs (on the backend's one LISTEN connection) and
        returns once it does: a change made before then was not heard.
        """
        ev = self._change
        with trio.move_on_after(max_wait):
            await self._listener.ensure(self._sql.change_channel, self._sql.cancel_channel)
            await ev.wait()

    async def wait_for_cancel(self, max_wait: float) -> None:
        """Wait for a NOTIFY of a cancellation requested, or ``max_wait`` seconds.

        The first call LISTENs (on the backend's one LISTEN connection) and
        returns once it does: a cancellation requested before then was not heard.
        """
        ev = self._cancel
        with trio.move_on_after(max_wait):
            await self._listener.ensure(self._sql.cancel_channel)
            await ev.wait()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._runner.aclose()

    def __repr__(self) -> str:
        mode = "listen" if self.listening else "poll"
        return f"<PostgresDriver schema={self.schema!r} {mode} notifications={self.notifications}>"
