"""A schedule's identity: from the queue, the spec and the args, never the process.

Workers named after their process (as ``trioqueue worker`` names them) share
one schedule: each tick once, one record, and a restart catches up from the
stored last tick. Records no worker writes any more are listed as stale and
pruned by the workers of their queue. On the memory backend and the autojump
clock.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing
from test_schedules import HOUR, Runs, clock_from, running, utc

import trioqueue as tq
from trioqueue import WorkerBuilder
from trioqueue.drivers import ScheduleRecord

DAY = 86_400.0


async def handler(args: Any) -> None:
    pass


def test_builder_tells_its_name_and_handler() -> None:
    b = WorkerBuilder("app:report@host-1:4242", handler=handler)
    assert (b.name, b.handler) == ("app:report@host-1:4242", handler)
    assert WorkerBuilder("w").handler is None
    with pytest.raises(AttributeError):
        b.name = "other"  # type: ignore[misc]


async def test_build_runs_the_builders_handler_and_refuses_another() -> None:
    async def other(args: Any) -> None:
        pass

    async with tq.MemoryBackend.open() as backend:
        b = WorkerBuilder("w", handler=handler).backend(backend)
        assert b.build().args_type is Any
        assert b.build(handler).args_type is Any
        with pytest.raises(ValueError, match="was made for the handler"):
            b.build(other)
        with pytest.raises(ValueError, match="has no handler: pass it to build"):
            WorkerBuilder("w").backend(backend).build()


async def test_default_names_come_from_the_queue_the_spec_and_the_args() -> None:
    async with tq.MemoryBackend.open(queue="app:report") as backend:
        worker = (
            WorkerBuilder("app:report@host-1:4242")
            .backend(backend)
            .every(10)
            .every(10, args={"kind": "a"})
            .every(10, args={"kind": "b"})
            .cron("0 6 * * *", tz="Europe/Paris")
            .every(10, name="mine")
            .build(handler)
        )
        names = [s.name for s in worker.statistics().schedules]
        from trioqueue._schedule._policy import default_name

        digest = default_name("q", "every:10s", b'{"kind":"a"}').rpartition("#")[2]
        assert names[0] == "app:report:every:10s"
        assert names[1] == f"app:report:every:10s#{digest}" and len(digest) == 12
        assert names[2].startswith("app:report:every:10s#") and names[2] != names[1]
        assert names[3:] == ["app:report:cron:0 6 * * *@Europe/Paris", "mine"]
        assert not any("4242" in n or "host" in n for n in names)
        # Another process (another worker name) gets the same names.
        again = WorkerBuilder("app:report@host-2:77").backend(backend).every(10).build(handler)
        assert again.statistics().schedules[0].name == names[0]


async def test_two_schedules_of_one_identity_in_a_worker_are_refused() -> None:
    async with tq.MemoryBackend.open() as backend:
        twins = WorkerBuilder("w").backend(backend).every(5, args=[1]).every(5, args=[1])
        with pytest.raises(ValueError, match=r"'default:every:5s#\w+'\] given twice .* name="):
            twins.build(handler)
        both = WorkerBuilder("w").backend(backend).every(5, args=[1]).every(5, args=[1], name="x")
        assert len(both.build(handler).statistics().schedules) == 2


def test_a_long_default_name_is_cut_with_a_digest_of_the_whole() -> None:
    from trioqueue._schedule._policy import Schedule, default_name

    queue = "q" * 255
    a, b = default_name(queue, "every:1s", None), default_name(queue, "every:2s", None)
    assert len(a) == len(b) == 200 and a != b and a[-13] == "~"
    s = Schedule.every(1, args=None, name=None).identified(queue, None)
    assert s.name == a and tq.TaskId(s.tick_id(1_700_000_000_000_000))


async def test_workers_of_two_processes_push_each_tick_once_into_one_record(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 0, 0, 400))) as backend:
        runs = Runs(backend)
        workers = [
            WorkerBuilder(f"jobs:tick@host:{pid}").backend(backend).every(1).build(runs.handler)
            for pid in (101, 102)
        ]
        async with trio.open_nursery() as nursery:
            for w in workers:
                await nursery.start(w.serve)
            await trio.sleep(5)
            for w in workers:
                w.stop()
        assert runs.ticks == [utc(2024, 1, 1) + timedelta(seconds=s) for s in range(1, 6)]
        assert [r.name for r in await backend.driver.schedules()] == ["default:every:1s"]


async def test_a_restart_under_another_worker_name_catches_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 10))) as backend:
        runs = Runs(backend)

        def worker(pid: int) -> tq.Worker:
            return WorkerBuilder(f"jobs:report@host:{pid}").backend(backend).cron(
                "0 * * * *"
            ).build(runs.handler)  # fmt: skip

        async with running(worker(101)):
            await trio.sleep(HOUR)  # to 01:10: the 01:00 tick
        await trio.sleep(3 * HOUR)  # down: 02:00, 03:00, 04:00 pass; back at 04:10
        restarted = worker(202)
        async with running(restarted):
            await trio.sleep(HOUR)  # to 05:10
        assert runs.ticks == [utc(2024, 1, 1, h) for h in (1, 4, 5)]
        (stats,) = restarted.statistics().schedules
        assert (stats.pushed, stats.skipped) == (2, 2)
        assert len(await backend.driver.schedules()) == 1


def record(name: str, **fields: Any) -> ScheduleRecord:
    base = ScheduleRecord(name, "jobs", None, 10.0, "UTC", 990.0, 1000.0, updated_at=990.0)
    return dataclasses.replace(base, **fields)


def test_a_record_is_stale_once_its_next_tick_is_long_overdue() -> None:
    from trioqueue._schedule._record import PRUNE_AFTER, STALE_AFTER, is_stale, prunable

    rec = record("r")
    assert not is_stale(rec, 1000 + STALE_AFTER)
    assert is_stale(rec, 1000 + STALE_AFTER + 1)
    assert not prunable(rec, 1000 + PRUNE_AFTER)
    assert prunable(rec, 1000 + PRUNE_AFTER + 1)
    # A monthly cron: three of its periods, when that is longer.
    monthly = record("m", expr="0 0 1 * *", interval=None, last_tick=1000 - 30 * DAY)
    assert not prunable(monthly, 1000 + 89 * DAY) and prunable(monthly, 1000 + 91 * DAY)
    # No next tick: stale after its last write.
    ended = record("e", next_tick=None)
    assert not is_stale(ended, 990 + STALE_AFTER) and is_stale(ended, 991 + STALE_AFTER)


def test_what_a_worker_prunes_is_of_its_queue_and_not_its_own() -> None:
    from trioqueue._schedule._policy import Schedule, to_forget
    from trioqueue._schedule._record import PRUNE_AFTER, STALE_AFTER

    mine = Schedule.every(10, args=None, name=None).identified("jobs", None)
    now = 1000 + STALE_AFTER + 1
    old_default = record("jobs@host:4242:every:10s")  # stale, same spec: superseded
    other_spec = record("jobs:every:60s", interval=60.0)  # stale, not prunable yet
    ancient = record("jobs:cron:0 3 * * *", expr="0 3 * * *", interval=None, next_tick=-PRUNE_AFTER)
    elsewhere = dataclasses.replace(old_default, queue="other")
    own = record(mine.name)
    live = record("jobs@host:4243:every:10s", next_tick=now + 5)
    other_args = record("jobs:every:10s#0123456789ab")  # another schedule, stale: kept a while
    by_hand = record("cleanup")  # a name given by hand, stale: kept a while
    records = [old_default, other_spec, ancient, elsewhere, own, live, other_args, by_hand]
    assert to_forget(records, "jobs", (mine,), now) == [old_default, ancient]
    named = Schedule.every(10, args=None, name="beat").identified("jobs", None)
    assert to_forget(records, "jobs", (named,), now) == [old_default, ancient]
    later = 1000 + PRUNE_AFTER + 1000  # a week on, all but its own and the other queue's go
    assert to_forget(records, "jobs", (mine,), later) == [
        old_default, other_spec, ancient, live, other_args, by_hand,
    ]  # fmt: skip


async def test_workers_prune_stale_records_of_their_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = utc(2024, 1, 1, 12)
    async with tq.MemoryBackend.open(
        queue="jobs", clock=clock_from(start - timedelta(days=30))
    ) as backend:
        ago = backend.driver.now()
        # Written 30 days ago, by workers named after their process.
        old = [
            ScheduleRecord("jobs@host:1:every:10s", "jobs", None, 10.0, "UTC", ago, ago + 10),
            ScheduleRecord("jobs@host:1:every:60s", "jobs", None, 60.0, "UTC", ago, ago + 60),
            ScheduleRecord("other@host:1:every:10s", "other", None, 10.0, "UTC", ago, ago + 10),
        ]
        for rec in old:
            await backend.driver.record_schedule(rec)
        await trio.sleep(30 * DAY - 1000)
        t = backend.driver.now()  # 1000 s before the worker starts: stale, not prunable
        recent = ScheduleRecord("jobs@host:2:every:60s", "jobs", None, 60.0, "UTC", t - 60, t)
        await backend.driver.record_schedule(recent)
        await trio.sleep(1000)
        runs = Runs(backend)
        async with running(WorkerBuilder("w").backend(backend).every(10).build(runs.handler)):
            await trio.sleep(1)
        left = sorted(r.name for r in await backend.driver.schedules())
        # Superseded and too old went; another spec seen lately and another queue's stay.
        assert left == ["jobs:every:10s", "jobs@host:2:every:60s", "other@host:1:every:10s"]
        assert datetime.fromtimestamp(backend.driver.now(), UTC) >= start
