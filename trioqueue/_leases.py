"""Lease upkeep of a consumer: extending the leases it holds, rescuing expired ones.

Two background loops of ``Consumer`` (which inherits them): the extender
renews every held lease each third of the lease, marks the ones found lost
(their tasks must not start) and moves the start-by time of the buffered
ones; the rescuer turns any expired lease of the queue into a retry or a kill.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ._driver import Driver
from ._retrying import retrying

__all__ = ["LeaseUpkeep"]

log = logging.getLogger("trioqueue.consumer")

T = TypeVar("T")


class LeaseUpkeep:
    """The extender and rescuer loops of ``Consumer`` (see there), and its retried storage calls."""

    driver: Driver
    transient: tuple[type[BaseException], ...]
    give_up_after: float
    queue: str
    token: str
    lease_seconds: float
    start_margin: float
    _held: set[str]
    _settling: set[str]
    _lost: set[str]
    _start_by: dict[str, float]

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

    async def _extender(self) -> None:
        every = self.lease_seconds / 3
        while True:
            await trio.sleep(every)
            ids = sorted(self._held - self._settling)
            if not ids:
                continue
            start_by = self.driver.now() + self.lease_seconds - self.start_margin
            ext = await self._retry(
                "extend leases", self.driver.extend, ids, self.token, self.lease_seconds
            )
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

    async def _rescuer(self) -> None:
        every = max(self.lease_seconds / 2, 0.01)
        while True:
            n = await self._retry("rescue expired leases", self.driver.rescue, self.queue)
            if n:
                log.info("rescued %d task(s) whose lease expired", n)
            await trio.sleep(every)
