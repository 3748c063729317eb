"""Conformance checks of the schedules' records: the upsert by name, whose last tick
only moves forward, the listing, and the deletion of a record no one wrote since."""

from __future__ import annotations

import dataclasses

from .._schedule._record import ScheduleRecord
from ._context import _Ctx

__all__ = ["schedules_forget", "schedules_record"]


async def _one(c: _Ctx, name: str) -> ScheduleRecord:
    found = [r for r in await c.driver.schedules() if r.name == name]
    c.expect(len(found) == 1, f"schedules() lists {len(found)} record(s) named {name!r}, not 1")
    return found[0]


def _same(c: _Ctx, got: ScheduleRecord, want: ScheduleRecord, why: str) -> None:
    for f in dataclasses.fields(ScheduleRecord):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if isinstance(a, float) and isinstance(b, float):
            c.near(a, b, f"{f.name} of schedule {want.name!r} {why}")
        else:
            c.expect(a == b, f"{f.name} of schedule {want.name!r} is {a!r} {why}, expected {b!r}")


async def schedules_record(c: _Ctx) -> None:
    """Records are upserted by name and listed by name; an older last tick changes nothing."""
    got = await c.driver.schedules()
    c.expect(got == [], f"a fresh store lists schedules {got!r}")
    t0 = c.clock.now
    cron = ScheduleRecord("s-cron", c.queue, "30 2 * * *", None, "Europe/Paris", None, t0 + 60)
    every = ScheduleRecord("s-every", c.queue + "-b", None, 1.5, "UTC", t0 - 1.5, t0 + 0.25)
    await c.driver.record_schedule(every)
    await c.driver.record_schedule(cron)
    names = [r.name for r in await c.driver.schedules()]
    c.expect(names == ["s-cron", "s-every"], f"schedules() listed {names}, not by name")
    _same(c, await _one(c, "s-cron"), dataclasses.replace(cron, updated_at=t0), "as recorded")
    _same(c, await _one(c, "s-every"), dataclasses.replace(every, updated_at=t0), "as recorded")

    c.clock.advance(60)
    moved = dataclasses.replace(cron, last_tick=t0 + 60, next_tick=t0 + 86_460)
    await c.driver.record_schedule(moved)
    want = dataclasses.replace(moved, updated_at=c.clock.now)
    _same(c, await _one(c, "s-cron"), want, "after a later tick was recorded")

    c.clock.advance(5)
    for stale_tick in (t0, None):
        stale = dataclasses.replace(cron, last_tick=stale_tick, next_tick=t0 + 1, tz="UTC")
        await c.driver.record_schedule(stale)
        _same(c, await _one(c, "s-cron"), want, f"after an older last tick ({stale_tick!r})")

    same = dataclasses.replace(moved, next_tick=t0 + 90_000.5, queue=c.queue + "-c")
    await c.driver.record_schedule(same)
    want = dataclasses.replace(same, updated_at=c.clock.now)
    _same(c, await _one(c, "s-cron"), want, "after the same last tick with a new next tick")

    c.clock.advance(1.25)
    later = dataclasses.replace(every, last_tick=t0 + 66.0, next_tick=None)
    await c.driver.record_schedule(later)
    _same(c, await _one(c, "s-every"), dataclasses.replace(later, updated_at=c.clock.now), "")
    listed = await c.driver.schedules()
    listed[0].last_tick = 0.0  # the caller's copy: storage must not change with it
    again = await _one(c, listed[0].name)
    c.expect(again.last_tick != 0.0, "schedules() returned the stored record, not a copy")


async def schedules_forget(c: _Ctx) -> None:
    """``forget_schedule`` deletes a record unless it was written after the time given."""
    if not callable(getattr(c.driver, "forget_schedule", None)):
        raise c.fail(f"{type(c.driver).__name__} has no `forget_schedule`: stale records stay")
    t0 = c.clock.now
    rec = ScheduleRecord("s-gone", c.queue, None, 10.0, "UTC", t0 - 10, t0)
    await c.driver.record_schedule(rec)
    await c.driver.record_schedule(dataclasses.replace(rec, name="s-kept"))
    seen = await _one(c, "s-gone")
    c.clock.advance(2)
    await c.driver.record_schedule(dataclasses.replace(rec, last_tick=t0, next_tick=t0 + 10))
    gone = await c.driver.forget_schedule("s-gone", seen.updated_at)
    c.expect(not gone, "forget_schedule deleted a record written after the time given")
    fresh = await _one(c, "s-gone")
    c.expect(await c.driver.forget_schedule("s-gone", fresh.updated_at),
             "forget_schedule did not delete a record written at the time given")  # fmt: skip
    c.expect(not await c.driver.forget_schedule("s-gone", fresh.updated_at),
             "forget_schedule said it deleted a record that was gone")  # fmt: skip
    c.expect(not await c.driver.forget_schedule("s-none", c.clock.now),
             "forget_schedule said it deleted a record that never was")  # fmt: skip
    names = [r.name for r in await c.driver.schedules() if r.name in ("s-gone", "s-kept")]
    c.expect(names == ["s-kept"], f"after forget_schedule, schedules() listed {names}")
