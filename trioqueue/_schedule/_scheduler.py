"""``Scheduler``: the task a worker runs beside its slots, pushing one task per tick.

For each schedule it reads the last tick pushed by any instance from storage,
asks the policy (``_policy.plan``) which due ticks to push, pushes them with
ids derived from the schedule's name and the tick (so a tick pushed by several
instances is stored once), records the last tick in storage, then sleeps
until the next tick. At its first look, then at most every ``PRUNE_EVERY``
seconds, it also deletes the records of its queue that no worker runs any
more (``_policy.to_forget``), from the records that look read.
"""

from __future__ import annotations

import logging
import math
import random
from typing import TYPE_CHECKING

import trio

from .._errors import DuplicateTask
from .._nursery import open_nursery
from .._retrying import retrying
from ._policy import Schedule, plan, to_forget, to_micros
from ._record import ScheduleRecord
from ._stats import ScheduleStatistics
from ._tick import META_SCHEDULE, META_TICK, at, iso

if TYPE_CHECKING:
    from .._backend import Backend

__all__ = ["MAX_NAP", "PRUNE_EVERY", "Scheduler", "read_schedules"]

log = logging.getLogger("trioqueue.schedule")

#: The longest single sleep (seconds): a long wait for a tick is cut into naps,
#: so that a wall clock set forward or back is noticed within one.
MAX_NAP = 60.0
#: Seconds between two prunes of a queue's stale schedule records by one worker
#: (the first when it starts).
PRUNE_EVERY = 3600.0


async def read_schedules(backend: Backend) -> list[ScheduleRecord]:
    """Return the schedules' records of ``backend``'s store, by name (storage errors retried).

    Raises:
      BackendError: if storage failed after retries.
    """
    return await retrying(
        "read the schedules", backend.driver.schedules, transient=backend.transient, attempts=3
    )


class _State:
    __slots__ = ("last", "next", "pushed", "skipped")

    def __init__(self) -> None:
        self.last: int | None = None
        self.next: int | None = None
        self.pushed = 0
        self.skipped = 0


class Scheduler:
    """Runs a worker's schedules: pushes each tick's task to the worker's queue.

    A schedule without a given name is named here, by the backend's queue,
    its spec and its args (``Schedule.identified``).

    Error handling:
      A storage error, or a push refused, is logged and the look is tried
      again after a backoff (up to a minute); it never stops the worker.
      A tick whose id is held by a task of another queue (two schedules of
      one name on two queues) is logged and skipped. A failed prune of stale
      records is logged and tried again ``PRUNE_EVERY`` seconds later.
    """

    def __init__(self, backend: Backend, schedules: tuple[Schedule, ...]) -> None:
        named = []
        for s in schedules:
            encoded = backend.codec.encode(s.args)  # CodecError now, not at the first tick
            named.append(s.identified(backend.queue, None if s.args is None else encoded))
        schedules = tuple(named)
        names = [s.name for s in schedules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"a worker's schedules need distinct names: {dup} given twice (the same "
                f"spec and args on one queue is one schedule; give the others their own name=)"
            )
        self.backend = backend
        self.schedules = schedules
        self._state = {s.name: _State() for s in schedules}
        self._prune_at = -math.inf

    def statistics(self) -> tuple[ScheduleStatistics, ...]:
        """Return a ``ScheduleStatistics`` per schedule, in the order they were added."""
        out = []
        for s in self.schedules:
            st = self._state[s.name]
            out.append(
                ScheduleStatistics(
                    s.name,
                    s.describe(),
                    s.catch_up,
                    None if st.last is None else at(st.last),
                    None if st.next is None else at(st.next),
                    st.pushed,
                    st.skipped,
                )
            )
        return tuple(out)

    async def run(self, stop: trio.Event) -> None:
        """Run every schedule until ``stop`` is set."""
        if not self.schedules:
            return
        async with open_nursery() as nursery:
            for s in self.schedules:
                nursery.start_soon(self._run_one, s)
            await stop.wait()
            nursery.cancel_scope.cancel()

    async def _prune(self, records: list[ScheduleRecord]) -> None:
        # At the first look, then at most every PRUNE_EVERY seconds: delete the
        # records of this queue no worker runs any more, from what a look read.
        forget = getattr(self.backend.driver, "forget_schedule", None)
        if forget is None or trio.current_time() < self._prune_at:
            return
        self._prune_at = trio.current_time() + PRUNE_EVERY
        try:
            now = self.backend.driver.now()
            for rec in to_forget(records, self.backend.queue, self.schedules, now):
                if await forget(rec.name, rec.updated_at):
                    log.info("schedule %s: stale record deleted", rec.name)
        except Exception:
            log.exception("pruning the stale schedules failed; again in %gs", PRUNE_EVERY)

    def _now(self) -> int:
        return to_micros(self.backend.driver.now())

    async def _stored(self, s: Schedule) -> int | None:
        records = await read_schedules(self.backend)
        await self._prune(records)
        for rec in records:
            if rec.name == s.name and rec.last_tick is not None:
                return to_micros(rec.last_tick)
        return None

    async def _run_one(self, s: Schedule) -> None:
        st = self._state[s.name]
        cursor: int | None = None  # the latest time this instance looked (or the last tick)
        reached: int | None = None  # the tick a finished sleep was for
        failures = 0
        while True:
            try:
                now = self._now() if reached is None else max(self._now(), reached)
                stored = await self._stored(s)
                if cursor is None:  # first look: catch up from the last tick, if any
                    cursor = now if stored is None else stored
                after = cursor if stored is None else max(cursor, stored)
                p = plan(s, after, now)
                for tick in p.push:
                    await self._push(s, tick)
                    st.pushed += 1
                if p.skipped:
                    log.warning(
                        "schedule %s: %d missed tick(s)%s not pushed (catch_up=%r)",
                        s.name, p.skipped, " and more" if p.more else "", s.catch_up,
                    )  # fmt: skip
                st.skipped += p.skipped
                last = p.push[-1] if p.push else stored
                if last is not None and (st.last is None or last > st.last):
                    st.last = last
                if p.push or st.next is None or p.skipped:
                    rec = s.record(self.backend.queue, last, p.next)
                    await retrying(
                        "record a schedule", self.backend.driver.record_schedule, rec,
                        transient=self.backend.transient, attempts=3,
                    )  # fmt: skip
                st.next = p.next
                cursor, reached, failures = now, None, 0
            except Exception:
                failures += 1
                delay = min(MAX_NAP, 0.5 * 2 ** min(failures, 8)) * (0.5 + random.random() / 2)
                log.exception("schedule %s: look failed, again in %.3gs", s.name, delay)
                await trio.sleep(delay)
                continue
            if p.next is None:
                log.warning("schedule %s: no tick comes any more", s.name)
                await trio.sleep_forever()
            await self._sleep_until(p.next)
            reached = p.next

    async def _sleep_until(self, target: int) -> None:
        while True:
            left = (target - self._now()) / 1e6
            if left <= 0:
                return
            if left <= MAX_NAP:
                await trio.sleep(left)
                return
            await trio.sleep(MAX_NAP)

    async def _push(self, s: Schedule, tick: int) -> None:
        meta = {META_SCHEDULE: s.name, META_TICK: iso(tick)}
        try:
            await self.backend.push(s.args, id=s.tick_id(tick), run_at=at(tick), meta=meta)
        except DuplicateTask as exc:
            log.error(
                "schedule %s: tick %s not pushed: its id %s is held by a task of another "
                "queue (give the schedules on each queue their own name=)",
                s.name, iso(tick), exc.id,
            )  # fmt: skip

    def __repr__(self) -> str:
        return f"<Scheduler {[s.name for s in self.schedules]!r}>"
