"""``Consumer``: one worker's side of the bridge, a prefetch channel of leased tasks.

A claimer fills a bounded prefetch channel with tasks leased from the driver;
an extender keeps the leases alive; a settler writes start marks, outcomes
and releases in batches; a rescuer recovers expired leases. Closing releases
whatever was prefetched but not started.

The worker talks to it one way: it takes the next leased task, reports what
became of each one (started, finished with an outcome, given back), reports
progress, waits on the idle state, and stops the claiming. The consumer calls
the worker once: ``on_cancel`` with the held tasks storage says to cancel,
after it dropped those still waiting in the prefetch channel (given back,
storage ends them CANCELLED) so that only running ones are left to cancel.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Sized

import trio

from ._driver import Driver, Outcome, StoredTask
from ._leases import LeaseUpkeep
from ._lifecycle import Retention
from ._nursery import open_nursery
from ._prefetch import next_prefetch
from ._settling import Settling

__all__ = ["Consumer"]

log = logging.getLogger("trioqueue.consumer")

_NEVER = float("inf")


class Consumer(LeaseUpkeep, Settling):
    """One worker's side of the bridge: a prefetch channel of leased tasks.

    Made by ``Backend.open_consumer``. The worker takes tasks with
    ``receive`` or ``receive_nowait`` (only when it has a free slot), reports
    ``started(id)`` as it begins one and ``finished(outcome)`` or
    ``give_back(id)`` when it ends, and calls ``stop_claiming()`` to stop.
    ``wait_idle()`` returns once a claim found nothing ready while nothing is
    held; ``wait_busy()`` once tasks were claimed again.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        transient: tuple[type[BaseException], ...],
        queue: str,
        concurrency: int,
        prefetch: int,
        lease_seconds: float,
        poll_interval: float,
        prefetch_max: int | None = None,
        give_up_after: float = math.inf,
        worker: str = "",
        retention: Retention | None = None,
    ) -> None:
        if prefetch < 1 or concurrency < 1:
            raise ValueError("concurrency and prefetch must be >= 1")
        prefetch_max = prefetch if prefetch_max is None else max(prefetch, prefetch_max)
        self.driver = driver
        self.transient = transient
        self.queue = queue
        self.token = secrets.token_hex(16)
        #: The name stored as the worker of each task this consumer claims.
        self.worker = worker or f"consumer-{self.token[:8]}"
        #: The retention of the queue when none is stored for it (None: kept),
        #: and the pace of the prunes (``interval``, ``batch``).
        self.retention = retention
        #: Called with the ids of held tasks whose cancellation storage reported.
        self.on_cancel: Callable[[list[str]], None] | None = None
        self._progress: dict[str, str] = {}  # reported, not yet stored
        self._cancels: set[str] = set()  # held tasks whose cancellation was requested
        self._extender_wait: trio.CancelScope | None = None
        self._started_at: dict[str, float] = {}
        self._empty_ready = 0  # empty claims in a row while a task was due
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        #: Seconds a storage call may keep failing before the consumer stops
        #: with ``BackendError`` (default: retried for as long as it takes).
        self.give_up_after = give_up_after
        self._concurrency = concurrency
        self._prefetch_base = prefetch
        self.prefetch_max = prefetch_max
        self._set_prefetch(prefetch)
        self._send, self._recv = trio.open_memory_channel[StoredTask](prefetch_max)
        # The channel's own deque, read on the hot path instead of building a
        # statistics() record per task; None if trio ever stops exposing it.
        self._buffer: Sized | None = getattr(getattr(self._send, "_state", None), "data", None)
        # Tasks leased by this consumer and not yet settled or released.
        self._held: set[str] = set()
        # Leases found lost by the extender: these must not start.
        self._lost: set[str] = set()
        # When the lease of each buffered task ends, less a margin, on the
        # driver's clock: the claim's (or last extension's) start plus the
        # lease. A task past it is not started (see ``_admit``).
        self._start_by: dict[str, float] = {}
        self.start_margin = min(lease_seconds / 10, 1.0)
        self._claiming = True
        self._claim_wake = trio.Event()
        self._claimer_waiting = False
        self._started: list[str] = []
        self._settling: set[str] = set()
        self._outcomes: list[Outcome] = []
        self._released: list[str] = []
        self._settle_wake = trio.Event()
        self._settler_waiting = False
        self._idle = trio.Event()
        self._busy = trio.Event()
        self._busy.set()
        self._wait_scope: trio.CancelScope | None = None
        self.claimed_total = 0
        self._settles = 0  # outcome batches written, so a claim knows what it may have missed
        self._reclaimed: list[tuple[StoredTask, float]] = []  # with their start-by time
        self._admitted_at = 0.0  # when the last task received was admitted

    # -- what the worker calls --

    def receive_nowait(self) -> StoredTask:
        """Take the next leased task from the prefetch channel without waiting.

        Raises:
          trio.WouldBlock: if none is buffered.
          trio.EndOfChannel: once claiming stopped and the channel is empty.
        """
        while True:
            rec = self._recv.receive_nowait()
            if self._admit(rec):
                return rec

    async def receive(self) -> StoredTask:
        """Take the next leased task, waiting until one is claimed.

        Raises:
          trio.EndOfChannel: once claiming stopped and the channel is empty.
        """
        while True:
            rec = await self._recv.receive()
            if self._admit(rec):
                return rec

    def _admit(self, rec: StoredTask) -> bool:
        # Whether a task taken from the channel may start: its lease still held.
        if self._claimer_waiting:
            self._took()
        if self._lost and rec.id in self._lost:
            self._lost.discard(rec.id)
            self._start_by.pop(rec.id, None)
            return False
        if self._cancels and rec.id in self._cancels:
            # Cancelled while it waited in the channel: given back, storage
            # ends it CANCELLED.
            self._start_by.pop(rec.id, None)
            self.give_back(rec.id)
            return False
        now = self._admitted_at = self.driver.now()
        if now < self._start_by.pop(rec.id, _NEVER):
            return True
        # The loop stalled past the lease (a stopped process, a blocked thread)
        # before a slot took it: another worker may have run it meanwhile. Not
        # started and not released (a release could not tell): left to rescue.
        log.warning("lease of task %s ran out before it started: not started", rec.id)
        self._held.discard(rec.id)
        return False

    def _drop_cancelled(self, ids: list[str]) -> None:
        # Storage reported these held tasks' cancellation: the ones waiting in
        # the prefetch channel leave it now and are given back (storage ends
        # them CANCELLED), the others keep their order. A task already handed
        # to a slot parked in ``receive`` is not in the buffer: ``_admit``
        # drops it. One that a slot admitted is running: the worker cancels it.
        by = self._start_by
        if not self.buffered or not any(id in by for id in ids):
            return
        drop = set(ids)
        keep: list[StoredTask] = []
        while True:
            try:
                rec = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            if rec.id in drop:
                by.pop(rec.id, None)
                self.give_back(rec.id)
            else:
                keep.append(rec)
        for rec in keep:  # no slot waits while the buffer holds tasks: back in order
            self._send.send_nowait(rec)
        if self._claimer_waiting:
            self._took()

    def _took(self) -> None:
        if self._send.statistics().current_buffer_used <= self._low_water:
            self._claimer_waiting = False
            self._claim_wake.set()

    def started(self, id: str) -> None:
        """Report that the task ``id``, just received, began running (flushed in a batch).

        Its start time is the time it was received: the worker calls this
        right after ``receive``, with no checkpoint between.
        """
        self._started.append(id)
        self._started_at[id] = self._admitted_at
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def finished(self, outcome: Outcome) -> None:
        """Report how a task ended; it is settled in the next batch."""
        id = outcome.id
        outcome.started_at = self._started_at.pop(id, None)
        if self._progress and (p := self._progress.pop(id, None)) is not None:
            outcome.progress = p
        if self._cancels:
            self._cancels.discard(id)
        self._outcomes.append(outcome)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def give_back(self, id: str) -> None:
        """Give back a task that will not run (or was cancelled by shutdown), unsettled."""
        self._released.append(id)
        self._started_at.pop(id, None)
        if self._cancels:
            self._cancels.discard(id)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def stop_claiming(self) -> int:
        """Stop claiming and give back what waits in the prefetch channel.

        Returns:
          How many tasks were given back (written to storage by the settler at once).
        """
        self._claiming = False
        self._claim_wake.set()
        if self._wait_scope is not None:
            self._wait_scope.cancel()
        n = 0
        while True:
            try:
                rec = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            n += 1
            self.give_back(rec.id)
        self._send.close()  # slots parked in receive() get EndOfChannel
        self._start_by.clear()
        return n

    async def wait_idle(self) -> None:
        """Return once a claim found nothing ready while nothing is held or being settled."""
        await self._idle.wait()

    async def wait_busy(self) -> None:
        """Return once the consumer is not idle (tasks were claimed since)."""
        await self._busy.wait()

    @property
    def buffered(self) -> int:
        """Tasks waiting in the prefetch channel."""
        if self._buffer is not None:
            return len(self._buffer)
        return self._send.statistics().current_buffer_used

    @property
    def held(self) -> int:
        """Tasks leased and not yet settled or released (buffered, running or settling)."""
        return len(self._held)

    def _set_prefetch(self, n: int) -> None:
        # The prefetch channel's capacity now: adaptive between its base and max.
        self.prefetch = n
        self._max_held = self._concurrency + n
        self._low_water = n // 2

    def _set_idle(self, idle: bool) -> None:
        if idle and not self._idle.is_set():
            self._idle.set()
            self._busy = trio.Event()
        elif not idle and self._idle.is_set():
            self._idle = trio.Event()
            self._busy.set()

    # -- background loops --

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Rescue expired leases once, register the worker, then run the loops."""
        # Rescue once before the first claim, so even a burst run picks up
        # the tasks of a worker that died.
        await self._retry("rescue expired leases", self.driver.rescue, self.queue)
        started_at = await self._register()
        async with open_nursery() as nursery:
            nursery.start_soon(self._settler)
            nursery.start_soon(self._extender, started_at)
            nursery.start_soon(self._rescuer)
            nursery.start_soon(self._pruner)
            nursery.start_soon(self._claimer)
            task_status.started()

    async def _claimer(self) -> None:
        send, driver = self._send, self.driver
        while True:
            if not self._claiming:
                return
            stats = send.statistics()
            used = stats.current_buffer_used
            # Tasks handed straight to slots parked in receive() never sit in
            # the buffer: count those slots as room too. What is held stays
            # bounded by concurrency + prefetch either way.
            room = self.prefetch - used + stats.tasks_waiting_receive
            free = min(room, self._max_held - len(self._held))
            if free <= 0 or (used > self._low_water and room < self.prefetch):
                self._claim_wake = trio.Event()
                self._claimer_waiting = True
                await self._claim_wake.wait()
                continue
            settles = self._settles
            # The driver sets the lease from its clock during the call, so
            # reading it before gives a start-by time that is never late.
            start_by = driver.now() + self.lease_seconds - self.start_margin
            recs = await self._retry(
                "claim tasks",
                driver.claim,
                self.queue,
                free,
                self.token,
                self.lease_seconds,
                self.worker,
            )
            if not self._claiming:
                for r in recs:
                    self._held.add(r.id)
                    self.give_back(r.id)
                return
            if self.prefetch_max > self._prefetch_base:  # adaptive (see _prefetch)
                n = next_prefetch(
                    self.prefetch,
                    base=self._prefetch_base,
                    most=self.prefetch_max,
                    full=len(recs) >= free,
                    starving=stats.tasks_waiting_receive > 0,
                )
                if n != self.prefetch:
                    self._set_prefetch(n)
            if recs:
                self._empty_ready = 0
                self._set_idle(False)
                self.claimed_total += len(recs)
                held, send_nowait, by = self._held, send.send_nowait, self._start_by
                for r in recs:
                    if r.id in held:
                        if r.id in self._settling:
                            # Our outcome for it (a failed attempt) committed
                            # while this claim ran, and the claim took it as
                            # ready again: run it once that settle returns.
                            self._reclaimed.append((r, start_by))
                        elif r.id in by:
                            # Our own lease on it expired and we claimed it
                            # again while it still waits in the channel: it
                            # holds the new lease.
                            by[r.id] = start_by
                        # Else the first attempt still runs (a stalled loop):
                        # that attempt settles it; running it twice would not.
                        continue
                    held.add(r.id)
                    by[r.id] = start_by
                    send_nowait(r)
                if self._lost:  # reclaimed after a lease was lost: it may run again
                    self._lost.difference_update(r.id for r in recs)
                await trio.lowlevel.checkpoint()
                continue
            if settles != self._settles:
                # An outcome was written while this claim ran: a failed task
                # may be ready again, unseen by the claim. Look once more.
                await trio.lowlevel.checkpoint()
                continue
            if not self._held and not self._pending():
                self._set_idle(True)
            nxt = await self._retry("read the schedule", driver.next_run_at, self.queue)
            if not self._claiming:
                return
            if settles != self._settles and not self._held:
                # The last outcomes were written while the schedule was read:
                # what the settler does for a wait (look at once) is done
                # here, or a burst run would wait for a task not yet due and
                # run it instead of stopping idle.
                await trio.lowlevel.checkpoint()
                continue
            timeout = self.poll_interval
            if nxt is not None:
                left = nxt - driver.now()
                if left > 0:
                    timeout = min(timeout, left)
                    self._empty_ready = 0
                else:
                    # A task is due and the claim gave nothing (another
                    # worker took it meanwhile, or the queue is paused):
                    # look again soon, backing off, not in a busy loop.
                    timeout = min(timeout, 0.001 * 2**self._empty_ready)
                    self._empty_ready = min(self._empty_ready + 1, 20)
            if timeout > 0:
                with trio.CancelScope() as self._wait_scope:
                    await self._retry("wait for tasks", driver.wait_for_tasks, self.queue, timeout)
                self._wait_scope = None

    async def close(self) -> None:
        """Stop claiming, settle what was reported, and release anything still held."""
        self.stop_claiming()
        # Anything still held was neither settled nor released: give it back.
        await self._flush()
        rest = sorted(self._held)
        if rest:
            await self._retry(
                "release tasks",
                self.driver.release,
                rest,
                self.token,
                attempts=5,
            )
            self._held.clear()
        try:
            await self._retry(
                "remove the worker", self.driver.remove_worker, self.worker, attempts=2
            )
        except Exception as exc:  # the entry expires by itself
            log.warning("could not remove the worker's entry %s: %s", self.worker, exc)

    def __repr__(self) -> str:
        return (
            f"<Consumer queue={self.queue!r} held={len(self._held)} "
            f"buffered={self.buffered}/{self.prefetch} claimed={self.claimed_total}>"
        )
