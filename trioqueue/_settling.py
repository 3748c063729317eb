"""The settler of a consumer: start marks, outcomes and releases, written in batches.

A loop of ``Consumer`` (which inherits it): whatever the worker reported since
the last turn goes to storage in one call per kind, and what could not be
written goes back to be written again, so nothing reported is forgotten.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import trio

from ._driver import Driver, Outcome, StoredTask

if TYPE_CHECKING:
    from ._flow._records import FlowDriver

__all__ = ["Settling"]

log = logging.getLogger("trioqueue.consumer")

T = TypeVar("T")


class Settling:
    """The settler loop of ``Consumer`` (see there)."""

    driver: Driver
    token: str
    _held: set[str]
    _settling: set[str]
    _start_by: dict[str, float]
    _started: list[str]
    _outcomes: list[Outcome]
    _released: list[str]
    _reclaimed: list[tuple[StoredTask, float]]
    _settle_wake: trio.Event
    _settler_waiting: bool
    _claim_wake: trio.Event
    _claimer_waiting: bool
    _wait_scope: trio.CancelScope | None
    _settles: int
    _send: trio.MemorySendChannel[StoredTask]

    if TYPE_CHECKING:

        def _retry(
            self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, attempts: float = math.inf
        ) -> Awaitable[T]: ...

        def give_back(self, id: str) -> None: ...

    def _pending(self) -> bool:
        return bool(self._started or self._outcomes or self._released)

    async def _settler(self) -> None:
        while True:
            if not self._pending():
                self._settle_wake = trio.Event()
                self._settler_waiting = True
                await self._settle_wake.wait()
            settled = bool(self._outcomes)
            await self._flush()
            if settled and not self._held and self._wait_scope is not None:
                # Nothing left running or buffered: a failed attempt may be
                # ready again now, so look at once instead of after the wait.
                self._wait_scope.cancel()
            await trio.lowlevel.checkpoint()

    async def _flush(self) -> None:
        # Each batch leaves its list before the driver is awaited; if the call
        # fails for good (or is cancelled) the batch goes back, so nothing the
        # worker reported is forgotten. Ids in flight are "settling": the
        # extender must not take them for lost leases.
        driver, token = self.driver, self.token
        if self._started and self._outcomes:
            # A task that started and ended since the last flush needs no
            # RUNNING mark: its outcome is settled from QUEUED in the same turn.
            ending = {o.id for o in self._outcomes}
            self._started = [i for i in self._started if i not in ending]
        if self._started:
            started, self._started = self._started, []
            try:
                await self._retry("mark tasks running", driver.start, started, token)
            except BaseException:
                self._started[:0] = started
                raise
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            ids = [o.id for o in outcomes]
            self._settling.update(ids)
            try:
                applied = await self._settle(outcomes, token)
            except BaseException:
                self._outcomes[:0] = outcomes
                raise
            finally:
                self._settling.difference_update(ids)
            if len(applied) != len(outcomes):
                lost = set(ids) - set(applied)
                log.warning("lease lost before settling %d task(s): %s", len(lost), sorted(lost))
            self._held.difference_update(ids)
            self._settles += 1
            if self._reclaimed:
                self._deliver_reclaimed()
            if self._claimer_waiting:
                self._claimer_waiting = False
                self._claim_wake.set()
        if self._released:
            released, self._released = self._released, []
            self._settling.update(released)
            try:
                await self._retry("release tasks", driver.release, released, token)
            except BaseException:
                self._released[:0] = released
                raise
            finally:
                self._settling.difference_update(released)
            self._held.difference_update(released)
            if self._claimer_waiting:  # room for as many again (a cancelled buffered task)
                self._claimer_waiting = False
                self._claim_wake.set()

    async def _settle(self, outcomes: list[Outcome], token: str) -> list[str]:
        # A workflow node's DONE goes through the driver's ``advance``, with
        # what follows it, in one transaction; every other outcome through ``settle``.
        steps = [o for o in outcomes if type(o) is not Outcome]
        if not steps:
            return await self._retry("settle tasks", self.driver.settle, outcomes, token)
        plain = [o for o in outcomes if type(o) is Outcome]
        done = await self._retry("settle tasks", self.driver.settle, plain, token) if plain else []
        advance = cast("FlowDriver", self.driver).advance
        return done + await self._retry("settle workflow steps", advance, steps, token)

    def _deliver_reclaimed(self) -> None:
        # Records claimed again while their previous outcome was being settled:
        # once that settle is done they are ours like any other claim.
        waiting, self._reclaimed = self._reclaimed, []
        for r, start_by in waiting:
            if r.id in self._held or r.id in self._settling:
                self._reclaimed.append((r, start_by))  # its settle has not returned yet
                continue
            self._held.add(r.id)
            self._start_by[r.id] = start_by
            try:
                self._send.send_nowait(r)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self.give_back(r.id)  # no room, or stopping: back to storage unstarted
