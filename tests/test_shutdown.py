"""Graceful and forced shutdown of workers and monitors (memory backend, autojump clock)."""

from __future__ import annotations

import os
import signal

import trio
import trio.testing
from conftest import Tally

import trioqueue as tq
from trioqueue import EventKind, Status, WorkerBuilder


async def by_status(b: tq.Backend) -> dict[Status, int]:
    return (await b.counts()).get(b.queue, {})


async def test_graceful_stop_finishes_running_and_releases_prefetched(
    autojump_clock: trio.abc.Clock, tally: Tally
) -> None:
    gate = trio.Event()

    async def handler(n: int) -> int:
        await gate.wait()
        return n

    async with tq.MemoryBackend.open() as b:
        await b.push_bulk(range(6))
        w = WorkerBuilder("w").backend(b).concurrency(2).prefetch(2).on_event(tally)
        worker = w.build(handler)
        async with trio.open_nursery() as n:
            n.start_soon(worker.run)
            await trio.testing.wait_all_tasks_blocked()
            # two running, two prefetched, two still in storage
            expected = {Status.RUNNING: 2, Status.QUEUED: 2, Status.PENDING: 2}
            assert await by_status(b) == expected
            worker.stop()
            await trio.testing.wait_all_tasks_blocked()
            # prefetched-but-unstarted tasks went back at once, attempt uncounted
            assert await by_status(b) == {Status.RUNNING: 2, Status.PENDING: 4}
            assert all(t.attempts == 0 for t in await b.list_tasks(status=Status.PENDING))
            assert worker.is_shutting_down and tally.counts[EventKind.STOPPING] == 1
            gate.set()  # running tasks finish normally
        assert await by_status(b) == {Status.DONE: 2, Status.PENDING: 4}
        assert tally.counts[EventKind.TASK_DONE] == 2
        # ... and the released ones are runnable by the next worker at once
        await WorkerBuilder("w2").backend(b).concurrency(2).build(handler).run(burst=True)
        assert await by_status(b) == {Status.DONE: 6}
        assert all(t.attempts == 1 for t in await b.list_tasks())


async def test_second_stop_cancels_running_and_releases_them(
    autojump_clock: trio.abc.Clock,
) -> None:
    cancelled = 0

    async def stuck(n: int) -> None:
        nonlocal cancelled
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled += 1
            raise

    async with tq.MemoryBackend.open() as b:
        await b.push_bulk(range(3))
        w = WorkerBuilder("w").backend(b).concurrency(3).shutdown_timeout(1000).build(stuck)
        async with trio.open_nursery() as n:
            n.start_soon(w.run)
            await trio.testing.wait_all_tasks_blocked()
            assert await by_status(b) == {Status.RUNNING: 3}
            t0 = trio.current_time()
            w.stop()
            await trio.sleep(5)
            assert await by_status(b) == {Status.RUNNING: 3}  # still finishing gracefully
            w.stop()  # the second signal
        assert trio.current_time() - t0 == 5
        assert cancelled == 3
        assert await by_status(b) == {Status.PENDING: 3}
        assert all(t.attempts == 0 for t in await b.list_tasks())
        assert w.statistics().released == 3


async def test_shutdown_timeout_cancels_what_still_runs(autojump_clock: trio.abc.Clock) -> None:
    started = trio.Event()

    async def stuck(n: int) -> None:
        started.set()
        await trio.sleep_forever()

    async with tq.MemoryBackend.open() as b:
        await b.push(1)
        w = WorkerBuilder("w").backend(b).shutdown_timeout(7).build(stuck)
        async with trio.open_nursery() as n:
            n.start_soon(w.run)
            await started.wait()
            t0 = trio.current_time()
            w.stop()
        assert trio.current_time() - t0 == 7
        assert await by_status(b) == {Status.PENDING: 1}


async def test_monitor_turns_signals_into_graceful_then_forced_shutdown() -> None:
    polite_started, stubborn_started, finish = trio.Event(), trio.Event(), trio.Event()
    polite_tally, stubborn_tally = Tally(), Tally()

    async def polite(n: int) -> str:
        polite_started.set()
        await finish.wait()
        return "polite finished"

    async def stubborn(n: int) -> None:
        stubborn_started.set()
        await trio.sleep_forever()

    async with tq.MemoryBackend.open(queue="a") as a, tq.MemoryBackend.open(queue="b") as b:
        pid = await a.push(1)
        await b.push(2)
        mon = tq.Monitor(shutdown_timeout=60)
        mon.register(WorkerBuilder("polite").backend(a).on_event(polite_tally).build(polite))
        mon.register(WorkerBuilder("stubborn").backend(b).on_event(stubborn_tally).build(stubborn))
        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                await n.start(mon.run)
                await polite_started.wait()
                await stubborn_started.wait()
                os.kill(os.getpid(), signal.SIGTERM)
                await polite_tally.wait(EventKind.STOPPING)
                await stubborn_tally.wait(EventKind.STOPPING)
                assert mon.signals_received == 1
                finish.set()  # the polite one finishes within the timeout...
                await polite_tally.wait(EventKind.STOP)
                os.kill(os.getpid(), signal.SIGINT)  # ...the stubborn one needs a second signal
        assert mon.signals_received == 2
        done = await a.get_task(pid)
        assert done is not None and done.result == "polite finished"
        assert await by_status(b) == {Status.PENDING: 1}
