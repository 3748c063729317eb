"""The consumer: start marks folded into settles, adaptive prefetch, claims racing settles,
and a prefetched task whose lease ran out is never started."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from backend_factories import Factory

import trioqueue as tq
from trioqueue import Attempt, Status, WorkerBuilder
from trioqueue.backends.memory import MemoryDriver


class RecordingDriver(MemoryDriver):
    """A memory driver that records the start marks and the claim sizes it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[str] = []
        self.claims: list[tuple[int, int]] = []  # (asked, got)

    async def start(self, ids: Sequence[str], token: str) -> None:
        self.started.extend(ids)
        await super().start(ids, token)

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[tq.StoredTask]:
        got = await super().claim(queue, limit, token, lease_seconds, worker)
        self.claims.append((limit, len(got)))
        return got


async def test_a_task_ended_before_the_flush_gets_no_running_mark(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = RecordingDriver()
    backend = tq.Backend(driver)
    release = trio.Event()

    async def handler(n: int) -> None:
        if n == 1:
            await release.wait()  # still running at the next flush: marked RUNNING

    async with backend.running():
        await backend.push_bulk([0, 1, 2, 3])
        w = WorkerBuilder("w").backend(backend).concurrency(4).build(handler)
        async with trio.open_nursery() as n:
            await n.start(w.serve)
            await trio.testing.wait_all_tasks_blocked()
            (slow,) = [t for t in await backend.list_tasks() if t.args == 1]
            assert slow.status is Status.RUNNING
            assert driver.started == [slow.id]  # the other three went QUEUED -> DONE
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            w.stop()
        assert await backend.counts() == {"default": {Status.DONE: 4}}


async def test_prefetch_grows_while_slots_starve_and_falls_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = RecordingDriver()
    backend = tq.Backend(driver)
    async with backend.running():
        await backend.push_bulk(range(2000))
        w = WorkerBuilder("w").backend(backend).concurrency(4).build(noop)
        assert (w.prefetch, w.prefetch_max) == (4, 16)
        await w.run(burst=True)
    asked = [a for a, _ in driver.claims]
    # fast tasks and a backlog: claims grew past concurrency + base prefetch...
    assert max(asked) > 8
    assert max(asked) <= 4 + 16
    # ...and the last claims, finding the backlog drained, fell back
    assert driver.claims[-1][1] < driver.claims[-1][0]


async def test_a_fixed_prefetch_never_grows(autojump_clock: trio.abc.Clock) -> None:
    driver = RecordingDriver()
    backend = tq.Backend(driver)
    async with backend.running():
        await backend.push_bulk(range(500))
        w = WorkerBuilder("w").backend(backend).concurrency(4).prefetch(4).build(noop)
        assert (w.prefetch, w.prefetch_max) == (4, 4)
        await w.run(burst=True)
    assert max(a for a, _ in driver.claims) <= 8


class LateClaimDriver(MemoryDriver):
    """Its second claim finds nothing, but returns only after an outcome was settled:
    a claim that raced a settle of a failed attempt, as on a database."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.settled = trio.Event()

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[tq.StoredTask]:
        self.calls += 1
        got = await super().claim(queue, limit, token, lease_seconds, worker)
        if self.calls == 2:
            assert got == []
            await self.settled.wait()
        return got

    async def settle(self, outcomes: Sequence[tq.Outcome], token: str) -> list[str]:
        done = await super().settle(outcomes, token)
        self.settled.set()
        return done

    async def next_run_at(self, queue: str) -> float | None:
        await trio.sleep(0.001)  # a round trip, as on a database (autojump clock)
        return await super().next_run_at(queue)


async def noop(n: int) -> None:
    return None


async def test_slow_tasks_never_grow_the_prefetch_so_workers_share_fairly(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = RecordingDriver()
    backend = tq.Backend(driver)
    ran: dict[str, int] = {"a": 0, "b": 0}

    def handler_for(name: str) -> object:
        async def slow(n: int) -> None:
            ran[name] += 1
            await trio.sleep(1)  # a second of work (the autojump clock makes it instant)

        return slow

    async with backend.running():
        await backend.push_bulk(range(40))
        workers = [
            WorkerBuilder(name).backend(backend).concurrency(2).build(handler_for(name))  # type: ignore[arg-type]
            for name in ran
        ]
        async with trio.open_nursery() as n:
            for w in workers:
                n.start_soon(partial(w.run, burst=True))
    assert sum(ran.values()) == 40
    # each worker holds at most its 2 slots + 2 prefetched: neither hoards the queue
    assert 15 <= ran["a"] <= 25 and 15 <= ran["b"] <= 25
    assert max(a for a, _ in driver.claims) <= 4


class SlowAnswerDriver(MemoryDriver):
    """Its first settle is applied at once but answers only after a claim took the
    settled task again: a commit whose reply was slow, as on a busy database."""

    def __init__(self) -> None:
        super().__init__()
        self.settling = False
        self.reclaimed = trio.Event()

    async def settle(self, outcomes: Sequence[tq.Outcome], token: str) -> list[str]:
        done = await super().settle(outcomes, token)
        if not self.reclaimed.is_set():
            self.settling = True
            await self.reclaimed.wait()
        return done

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[tq.StoredTask]:
        got = await super().claim(queue, limit, token, lease_seconds, worker)
        if got and self.settling:
            self.reclaimed.set()
        return got


async def retried_once(driver: MemoryDriver) -> tuple[list[int], Any]:
    """Run a task that fails its first attempt, in a burst; return the attempts and counts."""
    backend = tq.Backend(driver)
    attempts: list[int] = []

    async def flaky(n: int, attempt: tq.Attempt) -> None:
        attempts.append(attempt)
        if attempt == 1:
            raise RuntimeError("once")

    async with backend.running():
        await backend.push(1)
        w = WorkerBuilder("w").backend(backend).backoff(lambda n: 0.0).build(flaky)
        with trio.fail_after(60):
            await w.run(burst=True)  # a burst run stops only once nothing is ready
        return attempts, await backend.counts()


async def test_a_claim_that_raced_a_settle_looks_again_before_going_idle(
    autojump_clock: trio.abc.Clock,
) -> None:
    attempts, counts = await retried_once(LateClaimDriver())
    assert attempts == [1, 2]
    assert counts == {"default": {Status.DONE: 1}}


async def test_a_task_claimed_again_while_its_outcome_is_settled_runs_once_settled(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = SlowAnswerDriver()
    attempts, counts = await retried_once(driver)
    assert driver.reclaimed.is_set()  # the race happened
    assert attempts == [1, 2]  # and the second attempt ran, not left leased
    assert counts == {"default": {Status.DONE: 1}}


LEASE = 10.0


async def test_a_task_whose_lease_ran_out_in_the_channel_is_not_started(
    autojump_clock: trio.testing.MockClock, open_backend: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Task 1 runs while task 2 waits in the prefetch channel. Task 1's handler
    # stalls the whole loop past the lease (the clock jumps with no Trio task
    # running, as a stopped process or a blocked thread would), then returns:
    # the slot takes task 2 at once, before the extender could notice anything.
    starts: list[tuple[int, int]] = []
    waiting: list[int] = []

    async def handler(n: int, attempt: Attempt) -> None:
        starts.append((n, int(attempt)))
        if (n, attempt) == (1, 1):
            await trio.sleep(1)  # some work, while the claimer fills the channel
            waiting.append(worker.statistics().prefetched)
            autojump_clock.jump(LEASE * 2)

    async with open_backend() as backend:
        ids = [await backend.push(n) for n in (1, 2)]
        worker = (
            WorkerBuilder("w").backend(backend).concurrency(1).prefetch(1).lease(LEASE)
        ).build(handler)
        with trio.fail_after(LEASE * 20):
            await worker.run(burst=True)
            await worker.run(burst=True)  # rescues what the stall left behind
        tasks = [await backend.get_task(id) for id in ids]
    assert waiting == [1]  # task 2 was in the channel when the loop stalled
    assert (2, 1) not in starts, starts  # its first lease was gone: never started
    assert (2, 2) in starts
    assert [t.status for t in tasks if t is not None] == [Status.DONE, Status.DONE]
    assert f"lease of task {ids[1]} ran out before it started" in caplog.text


async def test_a_lease_kept_by_the_extender_lets_a_long_wait_in_the_channel_start(
    autojump_clock: trio.testing.MockClock, open_backend: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Without a stall the extender renews the leases of waiting tasks, so a
    # task that waited many leases in the channel still starts, once.
    starts: list[tuple[int, int]] = []

    async def handler(n: int, attempt: Attempt) -> None:
        starts.append((n, int(attempt)))
        if n == 1:
            await trio.sleep(LEASE * 5)

    async with open_backend() as backend:
        await backend.push_bulk([1, 2])
        worker = (
            WorkerBuilder("w").backend(backend).concurrency(1).prefetch(1).lease(LEASE)
        ).build(handler)
        with caplog.at_level(logging.WARNING), trio.fail_after(LEASE * 20):
            await worker.run(burst=True)
    assert starts == [(1, 1), (2, 1)]
    assert "ran out before it started" not in caplog.text


@pytest.mark.parametrize("ready", [0, 1, 3])
async def test_a_burst_leaves_a_task_not_yet_due_and_never_runs_one_early(
    autojump_clock: trio.abc.Clock, open_backend: Factory, ready: int
) -> None:
    # Whatever ran just before (tasks whose outcomes are still being written
    # when the claim finds nothing ready), a burst run stops at the first idle
    # moment: a task due later stays for the next run, as documented.
    ran: list[tuple[int, float]] = []

    async with open_backend() as b:

        async def handler(n: int) -> None:
            ran.append((n, b.driver.now()))

        for _ in range(6):  # the outcomes and the claimer race: give it rounds
            ran.clear()
            await b.push_bulk(range(ready))
            later = await b.push(-1, delay=1.0)
            stored = await b.driver.get(later)
            assert stored is not None
            due = stored.run_at
            await WorkerBuilder("w").backend(b).concurrency(2).build(handler).run(burst=True)
            assert b.driver.now() < due, "the burst waited for a task not yet due"
            assert sorted(n for n, _ in ran) == list(range(ready))
            task = await b.get_task(later)
            assert task is not None
            assert (task.status, task.attempts) == (Status.PENDING, 0)
            await trio.sleep(1.0)  # due now: the next burst runs it, not early
            await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
            assert [n for n, _ in ran][ready:] == [-1]
            assert ran[-1][1] >= due


class LateScheduleDriver(MemoryDriver):
    """Its second schedule read returns only once an outcome was settled: the last
    running task's outcome is written while the claimer, its claim empty, reads
    ``next_run_at``, as on a database."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.reading = trio.Event()  # the second read began
        self.settled = trio.Event()

    async def settle(self, outcomes: Sequence[tq.Outcome], token: str) -> list[str]:
        done = await super().settle(outcomes, token)
        self.settled.set()
        return done

    async def next_run_at(self, queue: str) -> float | None:
        self.reads += 1
        if self.reads == 2:
            self.reading.set()
            await self.settled.wait()
        return await super().next_run_at(queue)


async def test_a_burst_stops_when_the_last_outcome_lands_while_the_schedule_is_read(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = LateScheduleDriver()
    backend = tq.Backend(driver)
    ran: list[int] = []

    async def handler(n: int) -> None:
        await driver.reading.wait()  # ends while the claimer reads the schedule
        ran.append(n)

    async with backend.running():
        await backend.push(1)
        later = await backend.push(2, delay=1.0)
        start = trio.current_time()
        with trio.fail_after(60):
            await WorkerBuilder("w").backend(backend).build(handler).run(burst=True)
        assert trio.current_time() == start  # no wait for the task due in 1 s
        assert ran == [1]
        task = await backend.get_task(later)
        assert task is not None and (task.status, task.attempts) == (Status.PENDING, 0)
