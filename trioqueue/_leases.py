"""Upkeep loops of a consumer: leases, cancellations, progress, the workers' entry, retention.

Background loops of ``Consumer`` (which inherits them): the extender renews
every held lease each third of the lease, marks the ones found lost (their
tasks must not start), moves the start-by time of the buffered ones, stores
reported progress within about a second, hands the cancellations storage
reports to the worker and refreshes the worker's entry in the registry; the
rescuer turns any expired lease of the queue into a retry or a kill; the
pruner deletes the queue's finished tasks past its retention (the rule stored
for the queue, else the process's default), and no other queue's.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ._driver import Driver, WorkerRecord
from ._errors import BackendError
from ._lifecycle import Retention, cutoffs_of, rule_in_effect
from ._retrying import retrying

__all__ = ["PROGRESS_EVERY", "WORKERS_KEPT", "LeaseUpkeep"]

log = logging.getLogger("trioqueue.consumer")

T = TypeVar("T")

#: Seconds within which a reported progress is stored.
PROGRESS_EVERY = 1.0
#: Seconds between two refreshes of a worker's registry entry, at most.
REGISTRY_EVERY = 10.0
#: Seconds a dead worker's registry entry is kept before a prune deletes it.
WORKERS_KEPT = 3600.0
#: The shortest gap between two extensions woken early (a cancel signal).
_MIN_GAP = 0.05

_HOST = socket.gethostname()


class LeaseUpkeep:
    """The upkeep loops of ``Consumer`` (see there), and its retried storage calls."""

    driver: Driver
    transient: tuple[type[BaseException], ...]
    give_up_after: float
    queue: str
    token: str
    worker: str
    lease_seconds: float
    start_margin: float
    retention: Retention | None
    _concurrency: int
    _held: set[str]
    _settling: set[str]
    _lost: set[str]
    _start_by: dict[str, float]
    _progress: dict[str, str]
    _cancels: set[str]
    _extender_wait: trio.CancelScope | None
    on_cancel: Callable[[list[str]], None] | None

    if TYPE_CHECKING:

        @property
        def buffered(self) -> int: ...

        def _drop_cancelled(self, ids: list[str]) -> None: ...

    def _retry(
        self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, attempts: float = math.inf
    ) -> Awaitable[T]:
        return retrying(
            what,
            fn,
            *args,
            transient=self.transient,
            attempts=attempts,
            give_up_after=self.give_up_after,
        )

    def _record(self, started_at: float) -> WorkerRecord:
        return WorkerRecord(
            self.worker,
            _HOST,
            os.getpid(),
            self.queue,
            self._concurrency,
            max(0, len(self._held) - self.buffered),
            started_at,
        )

    async def _register(self) -> float:
        # Before the loops start: a worker is listed once it serves.
        started_at = self.driver.now()
        await self._retry(
            "register the worker", self.driver.register_worker, self._record(started_at)
        )
        return started_at

    async def _extender(self, started_at: float) -> None:
        every = self.lease_seconds / 3
        driver = self.driver
        clock = trio.current_time
        due = clock() + every
        registry_due = clock() + min(every, REGISTRY_EVERY)
        last = -math.inf
        while True:
            wake_at = min(due, registry_due)
            if self._progress:
                wake_at = min(wake_at, last + PROGRESS_EVERY)
            wait = wake_at - clock()
            if wait > 0:
                with trio.CancelScope() as self._extender_wait:
                    await self._retry("wait for cancellations", driver.wait_for_cancel, wait)
                self._extender_wait = None
            now = clock()
            if now - last < _MIN_GAP:
                await trio.sleep(_MIN_GAP - (now - last))
            if now >= registry_due:
                registry_due = now + min(every, REGISTRY_EVERY)
                await self._retry(
                    "refresh the worker", driver.register_worker, self._record(started_at)
                )
            if now >= due or self._progress or now < wake_at:  # due, progress, or a signal
                await self._extend()
                last = clock()
                if now >= due:
                    due = last + every

    async def _extend(self) -> None:
        ids = sorted(self._held - self._settling)
        progress, self._progress = self._progress, {}
        if not ids:
            return
        start_by = self.driver.now() + self.lease_seconds - self.start_margin
        held = set(ids)
        mine = {id: p for id, p in progress.items() if id in held}
        try:
            ext = await self._retry(
                "extend leases", self.driver.extend, ids, self.token, self.lease_seconds, mine
            )
        except BaseException:
            for id, p in mine.items():  # stored with the next extension or the settle
                self._progress.setdefault(id, p)
            raise
        kept = ext.held
        by = self._start_by
        for id in kept:
            if id in by:
                by[id] = start_by
        if len(kept) != len(ids):
            # Ids settled while the extend ran are gone from held: not lost.
            lost = (set(ids) - set(kept) - self._settling) & self._held
            if lost:
                log.warning("lease lost for %d task(s): %s", len(lost), sorted(lost))
                self._lost.update(lost)
                self._held.difference_update(lost)
        fresh = [id for id in ext.cancel if id not in self._cancels]
        if fresh:
            log.info("cancellation requested for %d task(s): %s", len(fresh), fresh)
            self._cancels.update(fresh)
            self._drop_cancelled(fresh)
            if self.on_cancel is not None:
                self.on_cancel(fresh)

    def report_progress(self, id: str, text: str) -> None:
        """Keep a task's latest progress (JSON text) to store with the next extension."""
        first = not self._progress
        self._progress[id] = text
        if first and self._extender_wait is not None:
            self._extender_wait.cancel()  # store it within PROGRESS_EVERY, not a third of the lease

    async def _rescuer(self) -> None:
        every = max(self.lease_seconds / 2, 0.01)
        while True:
            n = await self._retry("rescue expired leases", self.driver.rescue, self.queue)
            if n:
                log.info("rescued %d task(s) whose lease expired", n)
            await trio.sleep(every)

    async def _pruner(self) -> None:
        # At a random moment of each interval, so that many workers spread
        # their prunes; batch after batch while a batch comes back full. The
        # queue's stored rule is read again before each prune, so that a
        # rule set by any process applies from the next one; this process's
        # default serves only a queue with no stored rule.
        pace = self.retention if self.retention is not None else Retention()
        queue = self.queue
        await trio.sleep(random.uniform(0, pace.interval))
        while True:
            try:
                stored = await retrying(
                    "read the queue's retention",
                    self.driver.retentions,
                    [queue],
                    transient=self.transient,
                    attempts=3,
                )
                now = self.driver.now()
                cutoffs = cutoffs_of(rule_in_effect(stored.get(queue), self.retention), now)
                while True:
                    n = await retrying(
                        "prune finished tasks",
                        self.driver.prune,
                        queue,
                        cutoffs,
                        pace.batch,
                        now - WORKERS_KEPT,
                        transient=self.transient,
                        attempts=3,
                    )
                    if n:
                        log.info("pruned %d finished task(s) of %r past their retention", n, queue)
                    if n < pace.batch:
                        break
                    await trio.lowlevel.checkpoint()
            except BackendError as exc:  # retention is upkeep: it never stops a worker
                log.warning("pruning finished tasks failed: %s", exc)
            await trio.sleep(pace.interval * random.uniform(0.5, 1.5))
