"""``Consumer``: one worker's side of the bridge, a prefetch channel of leased tasks.

A claimer fills a bounded prefetch channel with tasks leased from the driver;
an extender keeps the leases alive; a settler writes start marks, outcomes
and releases in batches; a rescuer recovers expired leases. Closing releases
whatever was prefetched but not started.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sized
from typing import TYPE_CHECKING

import trio

from ._driver import Outcome, StoredTask
from ._retrying import retrying

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = ["Consumer"]

log = logging.getLogger("trioqueue.consumer")


class Consumer:
    """One worker's side of the bridge: a prefetch channel of leased tasks.

    Made by ``Backend.open_consumer``. The worker takes tasks from
    ``receive`` (only when it has a free slot), calls ``start_nowait`` as it
    begins one, and ``settle_nowait`` or ``release_nowait`` when it ends.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        queue: str,
        concurrency: int,
        prefetch: int,
        lease_seconds: float,
        poll_interval: float,
    ) -> None:
        if prefetch < 1 or concurrency < 1:
            raise ValueError("concurrency and prefetch must be >= 1")
        self.backend = backend
        self.driver = backend.driver
        self.queue = queue
        self.token = secrets.token_hex(16)
        self.prefetch = prefetch
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self._max_held = concurrency + prefetch
        self._low_water = prefetch // 2
        self._send, self.receive = trio.open_memory_channel[StoredTask](prefetch)
        # The channel's own deque, read on the hot path instead of building a
        # statistics() record per task; None if trio ever stops exposing it.
        self._buffer: Sized | None = getattr(getattr(self._send, "_state", None), "data", None)
        #: Tasks leased by this consumer and not yet settled or released.
        self.held: set[str] = set()
        #: Leases found lost by the extender: these must not start.
        self.lost: set[str] = set()
        self._claiming = True
        self._claim_wake = trio.Event()
        self._claimer_waiting = False
        self._started: list[str] = []
        self._settling: set[str] = set()
        self._outcomes: list[Outcome] = []
        self._released: list[str] = []
        self._settle_wake = trio.Event()
        self._settler_waiting = False
        self.claimed_total = 0
        #: Called by the claimer when a claim found nothing and nothing is buffered.
        self.on_empty: Callable[[], None] | None = None
        self._recheck = False
        self._wait_scope: trio.CancelScope | None = None

    # -- what the worker calls (all non-blocking) --

    def took_nowait(self) -> None:
        """Tell the claimer a task left the prefetch channel."""
        if self._claimer_waiting and self._send.statistics().current_buffer_used <= self._low_water:
            self._claimer_waiting = False
            self._claim_wake.set()

    def start_nowait(self, id: str) -> None:
        """Record that the task ``id`` began running (flushed in a batch)."""
        self._started.append(id)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def settle_nowait(self, outcome: Outcome) -> None:
        """Queue an outcome for the next settle batch."""
        self._outcomes.append(outcome)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def release_nowait(self, id: str) -> None:
        """Give back a task that will not run (or was cancelled by shutdown)."""
        self._released.append(id)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def recheck_soon(self) -> None:
        """Ask the claimer to look for ready tasks again once outcomes are settled."""
        self._recheck = True
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def stop_claiming(self) -> list[str]:
        """Stop claiming and release what waits in the prefetch channel.

        Returns:
          The ids released (they are written to storage by the settler at once).
        """
        self._claiming = False
        self._claim_wake.set()
        ids = []
        while True:
            try:
                rec = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            ids.append(rec.id)
            self.release_nowait(rec.id)
        self._send.close()  # slots parked in receive() get EndOfChannel
        return ids

    @property
    def buffered(self) -> int:
        """Tasks waiting in the prefetch channel."""
        if self._buffer is not None:
            return len(self._buffer)
        return self._send.statistics().current_buffer_used

    # -- background loops --

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Rescue once before the first claim, so even a burst run picks up
        # the tasks of a worker that died.
        await retrying("rescue expired leases", self.driver.rescue, self.queue)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._settler)
            nursery.start_soon(self._extender)
            nursery.start_soon(self._rescuer)
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
            free = min(room, self._max_held - len(self.held))
            if free <= 0 or (used > self._low_water and room < self.prefetch):
                self._claim_wake = trio.Event()
                self._claimer_waiting = True
                await self._claim_wake.wait()
                continue
            recs = await retrying(
                "claim tasks", driver.claim, self.queue, free, self.token, self.lease_seconds
            )
            if not self._claiming:
                for r in recs:
                    self.held.add(r.id)
                    self.release_nowait(r.id)
                return
            if recs:
                self.claimed_total += len(recs)
                held, send_nowait = self.held, send.send_nowait
                for r in recs:
                    if r.id in held:
                        # Our own lease on it expired and we claimed it again
                        # while the first attempt still runs (a stalled loop):
                        # that attempt settles it; running it twice would not.
                        continue
                    held.add(r.id)
                    send_nowait(r)
                if self.lost:  # reclaimed after a lease was lost: it may run again
                    self.lost.difference_update(r.id for r in recs)
                await trio.lowlevel.checkpoint()
                continue
            if not self.held and self.on_empty is not None and not self._pending():
                self.on_empty()
                if not self._claiming:
                    return
            nxt = await retrying("read the schedule", driver.next_run_at, self.queue)
            timeout = self.poll_interval
            if nxt is not None:
                timeout = max(0.0, min(timeout, nxt - driver.now()))
            if timeout > 0:
                with trio.CancelScope() as self._wait_scope:
                    await retrying("wait for tasks", driver.wait_for_tasks, self.queue, timeout)
                self._wait_scope = None

    def _pending(self) -> bool:
        return bool(self._started or self._outcomes or self._released)

    async def _settler(self) -> None:
        while True:
            if not (self._pending() or self._recheck):
                self._settle_wake = trio.Event()
                self._settler_waiting = True
                await self._settle_wake.wait()
            await self._flush()
            if self._recheck and not self._pending():
                self._recheck = False
                if self._wait_scope is not None:
                    self._wait_scope.cancel()
            await trio.lowlevel.checkpoint()

    async def _flush(self) -> None:
        # Each batch leaves its list before the driver is awaited; if the call
        # fails for good (or is cancelled) the batch goes back, so nothing the
        # worker reported is forgotten. Ids in flight are "settling": the
        # extender must not take them for lost leases.
        driver, token = self.driver, self.token
        if self._started:
            started, self._started = self._started, []
            try:
                await retrying("mark tasks running", driver.start, started, token)
            except BaseException:
                self._started[:0] = started
                raise
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            ids = [o.id for o in outcomes]
            self._settling.update(ids)
            try:
                applied = await retrying("settle tasks", driver.settle, outcomes, token)
            except BaseException:
                self._outcomes[:0] = outcomes
                raise
            finally:
                self._settling.difference_update(ids)
            if len(applied) != len(outcomes):
                lost = set(ids) - set(applied)
                log.warning("lease lost before settling %d task(s): %s", len(lost), sorted(lost))
            self.held.difference_update(ids)
            if self._claimer_waiting:
                self._claimer_waiting = False
                self._claim_wake.set()
        if self._released:
            released, self._released = self._released, []
            self._settling.update(released)
            try:
                await retrying("release tasks", driver.release, released, token)
            except BaseException:
                self._released[:0] = released
                raise
            finally:
                self._settling.difference_update(released)
            self.held.difference_update(released)

    async def _extender(self) -> None:
        every = self.lease_seconds / 3
        while True:
            await trio.sleep(every)
            ids = sorted(self.held - self._settling)
            if not ids:
                continue
            kept = await retrying(
                "extend leases", self.driver.extend, ids, self.token, self.lease_seconds
            )
            if len(kept) != len(ids):
                # Ids settled while the extend ran are gone from held: not lost.
                lost = (set(ids) - set(kept) - self._settling) & self.held
                if lost:
                    log.warning("lease lost for %d task(s): %s", len(lost), sorted(lost))
                    self.lost.update(lost)
                    self.held.difference_update(lost)

    async def _rescuer(self) -> None:
        every = max(self.lease_seconds / 2, 0.01)
        while True:
            n = await retrying("rescue expired leases", self.driver.rescue, self.queue)
            if n:
                log.info("rescued %d task(s) whose lease expired", n)
            await trio.sleep(every)

    async def _close(self) -> None:
        self.stop_claiming()
        # Anything still held was neither settled nor released: give it back.
        await self._flush()
        rest = sorted(self.held)
        if rest:
            await retrying("release tasks", self.driver.release, rest, self.token, attempts=5)
            self.held.clear()

    def __repr__(self) -> str:
        return (
            f"<Consumer queue={self.queue!r} held={len(self.held)} "
            f"buffered={self.buffered}/{self.prefetch} claimed={self.claimed_total}>"
        )
