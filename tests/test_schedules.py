"""Schedules on the memory backend, on the autojump clock: exact tick times, DST, catch-up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing

import trioqueue as tq
import trioqueue.backends.memory
from trioqueue import Tick, WorkerBuilder

HOUR = 3600.0


def clock_from(start: datetime) -> Callable[[], float]:
    """POSIX seconds that start at ``start`` and follow the Trio clock."""
    base, t0 = start.timestamp(), trio.current_time()
    return lambda: base + (trio.current_time() - t0)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


class Runs:
    """What a handler saw: each run's tick, when it ran (driver clock) and its task id."""

    def __init__(self, backend: tq.Backend) -> None:
        self.backend = backend
        self.seen: list[tuple[datetime, datetime, str]] = []

    async def handler(self, args: Any, tick: Tick, task_id: tq.TaskId) -> None:
        now = datetime.fromtimestamp(self.backend.driver.now(), UTC)
        self.seen.append((tick, now, str(task_id)))

    @property
    def ticks(self) -> list[datetime]:
        return [t for t, _, _ in self.seen]


@asynccontextmanager
async def running(worker: tq.Worker) -> AsyncIterator[tq.Worker]:
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.serve)
        yield worker
        worker.stop()


def builder(backend: tq.Backend, name: str = "sched") -> WorkerBuilder:
    return WorkerBuilder(name).backend(backend).poll_interval(HOUR)


async def test_hourly_ticks_run_at_their_exact_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 10))) as backend:
        runs = Runs(backend)
        worker = builder(backend).cron("0 * * * *", args={"k": 1}).build(runs.handler)
        async with running(worker):
            await trio.sleep(3 * HOUR)  # to 03:10
        want = [utc(2024, 1, 1, h) for h in (1, 2, 3)]
        assert runs.ticks == want
        assert [when for _, when, _ in runs.seen] == want  # each ran at its tick, not later
        # The default name: the queue, the spec, and a digest of the encoded args
        # (sha256 of b'{"k":1}'): the same in every process and after a restart.
        name = "default:cron:0 * * * *#a0da1fce57d0"
        assert [i for _, _, i in runs.seen] == [
            f"sched:{name}:2024-01-01T0{h}:00:00Z" for h in (1, 2, 3)
        ]
        task = await backend.get_task(runs.seen[0][2])
        assert task is not None and task.args == {"k": 1}
        assert task.meta == {"schedule": name, "tick": "2024-01-01T01:00:00Z"}
        assert task.run_at == want[0]
        (stats,) = worker.statistics().schedules
        assert (stats.name, stats.schedule, stats.catch_up) == (
            name, "cron '0 * * * *' UTC", "latest",
        )  # fmt: skip
        assert (stats.last_tick, stats.next_tick, stats.pushed, stats.skipped) == (
            utc(2024, 1, 1, 3), utc(2024, 1, 1, 4), 3, 0,
        )  # fmt: skip
        (rec,) = await backend.driver.schedules()
        next_tick = utc(2024, 1, 1, 4).timestamp()
        assert (rec.last_tick, rec.next_tick) == (want[-1].timestamp(), next_tick)
        assert (rec.queue, rec.expr, rec.interval, rec.tz) == ("default", "0 * * * *", None, "UTC")


async def test_every_ticks_on_multiples_of_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 0, 7))) as backend:
        runs = Runs(backend)
        worker = builder(backend, "ivl").every(2.5, name="beat").build(runs.handler)
        async with running(worker):
            await trio.sleep(10)  # to 00:00:17
        base = utc(2024, 1, 1)
        want = [base + timedelta(seconds=s) for s in (7.5, 10, 12.5, 15)]
        assert runs.ticks == want
        assert [when for _, when, _ in runs.seen] == want
        assert runs.seen[0][2] == "sched:beat:2024-01-01T00:00:07.500000Z"


@pytest.mark.parametrize(
    ("start", "want"),
    [
        pytest.param(
            utc(2024, 3, 30, 1),
            # 02:30 CET, then the gap (02:00 -> 03:00 CEST): the first minute after it,
            # then 02:30 CEST: once a day, every day.
            [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 0), utc(2024, 4, 1, 0, 30)],
            id="spring-forward",
        ),
        pytest.param(
            utc(2024, 10, 26, 0),
            # 02:30 happens twice on Oct 27 (CEST, then CET): it runs the first time only.
            [utc(2024, 10, 26, 0, 30), utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)],
            id="fall-back",
        ),
    ],
)
@pytest.mark.seconds  # two days of a worker's own timers
async def test_a_daily_local_time_runs_once_a_day_across_dst(
    autojump_clock: trio.testing.MockClock, start: datetime, want: list[datetime]
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(start)) as backend:
        runs = Runs(backend)
        worker = builder(backend).cron("30 2 * * *", tz="Europe/Berlin").build(runs.handler)
        async with running(worker):
            await trio.sleep(50 * HOUR)
        assert runs.ticks == want
        assert [when for _, when, _ in runs.seen] == want


async def test_an_hourly_schedule_in_a_zone_follows_real_hours_at_fall_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 10, 26, 22, 10))) as backend:
        runs = Runs(backend)
        worker = builder(backend).cron("30 * * * *", tz="Europe/Berlin").build(runs.handler)
        async with running(worker):
            await trio.sleep(4 * HOUR)
        # 00:30, 01:30, 02:30 CEST, 02:30 CET: local 02:30 twice, an hour apart.
        assert runs.ticks == [utc(2024, 10, 26, 22, 30) + timedelta(hours=h) for h in range(4)]


@pytest.mark.parametrize(
    ("catch_up", "caught_up"),
    [("latest", [4]), ("all", [2, 3, 4]), ("none", [])],
)
async def test_catch_up_after_three_hours_down(
    autojump_clock: trio.testing.MockClock, catch_up: str, caught_up: list[int]
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 10))) as backend:
        runs = Runs(backend)

        def worker() -> tq.Worker:
            return (
                builder(backend)
                .cron("0 * * * *", catch_up=catch_up, name="hourly")
                .build(runs.handler)
            )

        async with running(worker()):
            await trio.sleep(1 * HOUR + 20 * 60)  # to 01:30: the 01:00 tick
        await trio.sleep(3 * HOUR)  # down: 02:00, 03:00 and 04:00 pass; back at 04:30
        second = worker()
        async with running(second):
            await trio.sleep(HOUR)  # to 05:30
        back = utc(2024, 1, 1, 4, 30)
        want = [(utc(2024, 1, 1, 1), utc(2024, 1, 1, 1))]
        want += [(utc(2024, 1, 1, h), back) for h in caught_up]
        want += [(utc(2024, 1, 1, 5), utc(2024, 1, 1, 5))]
        assert sorted((t, when) for t, when, _ in runs.seen) == want
        (stats,) = second.statistics().schedules
        assert (stats.pushed, stats.skipped) == (len(caught_up) + 1, 3 - len(caught_up))


async def test_catch_up_all_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 0, 30))) as backend:
        runs = Runs(backend)

        def worker() -> tq.Worker:
            return builder(backend).cron("* * * * *", catch_up="all").build(runs.handler)

        async with running(worker()):
            await trio.sleep(60)  # 00:01
        await trio.sleep(500 * 60)  # 500 minutes down
        async with running(worker()):
            await trio.sleep(1)
        caught = sorted(runs.ticks[1:])
        first_back = utc(2024, 1, 1, 8, 21)  # 00:01:30 + 500 min = 08:21:30
        assert caught == [first_back - timedelta(minutes=m) for m in range(99, -1, -1)]


async def test_a_crowd_of_workers_pushes_each_tick_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 1, 1, 0, 0, 0, 400))) as backend:
        runs = Runs(backend)
        workers = [builder(backend, "crowd").every(1).build(runs.handler) for _ in range(3)]
        async with trio.open_nursery() as nursery:
            for w in workers:
                await nursery.start(w.serve)
            await trio.sleep(5)
            workers[0].stop()
            workers[1].stop()
            await trio.sleep(5)
            workers[2].stop()
        want = [utc(2024, 1, 1) + timedelta(seconds=s) for s in range(1, 11)]
        assert runs.ticks == want
        assert sum(w.statistics().schedules[0].pushed for w in workers) >= len(want)


async def test_a_hand_pushed_task_has_its_run_at_as_tick(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with tq.MemoryBackend.open(clock=clock_from(utc(2024, 5, 1, 12))) as backend:
        runs = Runs(backend)
        worker = builder(backend).build(runs.handler)
        await backend.push(None, run_at=utc(2024, 5, 1, 12, 0, 3))
        await backend.push(None, run_at=utc(2024, 5, 1, 12, 0, 1), meta={"tick": "not a time"})
        async with running(worker):
            await trio.sleep(5)
        assert sorted(runs.ticks) == [utc(2024, 5, 1, 12, 0, 1), utc(2024, 5, 1, 12, 0, 3)]
        assert all(type(t) is Tick for t in runs.ticks)
        assert worker.statistics().schedules == ()


class FlakyScheduleDriver(tq.backends.memory.MemoryDriver):
    """Fails its first ``failures`` reads of the schedules, then works."""

    failures = 3

    async def schedules(self) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise OSError("storage unreachable")
        return await super().schedules()


async def test_a_storage_error_delays_a_look_and_never_stops_the_worker(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    driver = FlakyScheduleDriver(clock=clock_from(utc(2024, 1, 1, 0, 0, 1)))
    backend = tq.Backend(driver)
    async with backend.running():
        runs = Runs(backend)
        worker = builder(backend).every(10, name="ten").build(runs.handler)
        async with running(worker):
            await trio.sleep(25)  # to 00:00:26
        assert runs.ticks == [utc(2024, 1, 1, 0, 0, 10), utc(2024, 1, 1, 0, 0, 20)]
    failed = [r for r in caplog.records if "schedule ten: look failed" in r.getMessage()]
    assert len(failed) == 3 and all(r.name == "trioqueue.schedule" for r in failed)
