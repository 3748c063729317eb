"""A task's whole life through the public API, on every backend (autojump clock).

Awaited results, watching, cancelling queued and running tasks, snoozes,
progress, paused queues, the workers' registry, retention and ``if_exists``.
"""

from __future__ import annotations

from contextlib import aclosing
from dataclasses import dataclass
from datetime import timedelta

import pytest
import trio
import trio.testing
from backend_factories import Factory

import trioqueue as tq
from trioqueue import Progress, Snooze, Status, WorkerBuilder
from trioqueue._errors import MAX_SNOOZES
from trioqueue._outcome import RETRY, SNOOZED, decide


@dataclass
class Sum:
    total: int


async def test_wait_result_returns_the_result_typed_or_plain(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def add(xs: list[int]) -> dict[str, int]:
        return {"total": sum(xs)}

    async with open_backend() as b:
        w = WorkerBuilder("adder").backend(b).build(add)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            tid = await b.push([1, 2, 3])
            other = await b.push([4])
            assert await b.wait_result(tid, type=Sum) == Sum(6)
            assert await b.wait_result(other) == {"total": 4}
            w.stop()


async def test_wait_result_raises_task_failed_and_task_cancelled(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def boom(n: int) -> None:
        raise ValueError(f"bad {n}")

    async with open_backend() as b:
        failing = await b.push(7, max_attempts=2)
        later = await b.push(8, delay=3600)
        w = WorkerBuilder("boom").backend(b).build(boom)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            with pytest.raises(tq.TaskFailed) as failed:
                await b.wait_result(failing)
            assert failed.value.task.status is Status.KILLED
            assert failed.value.task.attempts == 2
            assert failed.value.task.last_error == "ValueError: bad 7"

            async def cancel_soon() -> None:
                await trio.sleep(1)
                assert await b.cancel_task(later)

            nursery.start_soon(cancel_soon)
            with pytest.raises(tq.TaskCancelled) as cancelled:
                await b.wait_result(later)
            assert cancelled.value.task.id == later
            with pytest.raises(LookupError):
                await b.wait_result("no-such-task")
            w.stop()


async def test_a_running_task_is_cancelled_and_ends_cancelled_without_retry(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    started = trio.Event()
    cancelled = trio.Event()

    async def forever(n: int) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    async with open_backend() as b:
        tid = await b.push(1)
        w = WorkerBuilder("slow").backend(b).lease(9).build(forever)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await started.wait()
            asked = trio.current_time()
            assert await b.cancel_task(tid)
            with pytest.raises(tq.TaskCancelled):
                await b.wait_result(tid)
            assert cancelled.is_set()
            assert trio.current_time() - asked <= 3.0 + 0.5  # one extension: a third of the lease
            task = await b.get_task(tid)
            assert task is not None and task.status is Status.CANCELLED
            assert task.attempts == 1
            assert not await b.cancel_task(tid)  # final now
            w.stop()


async def _cancel_a_buffered_task(b: tq.Backend, bound: float) -> None:
    """One slot runs a task until cancelled; the task buffered behind it is cancelled.

    The buffered one must end CANCELLED within ``bound`` seconds, never run,
    while the first still runs; the worker's counts stay right.
    """
    started = trio.Event()
    ran: list[int] = []

    async def handler(n: int) -> None:
        ran.append(n)
        started.set()
        await trio.sleep_forever()

    first = await b.push(1)
    second = await b.push(2)
    w = WorkerBuilder("one").backend(b).concurrency(1).prefetch(1).lease(30).build(handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.serve)
        await started.wait()
        with trio.fail_after(20):
            async with aclosing(b.watch(second)) as snapshots:
                async for t in snapshots:  # claimed behind the first: buffered
                    if t.status is Status.QUEUED:
                        break
        assert w.statistics().prefetched == 1
        asked = trio.current_time()
        assert await b.cancel_task(second)
        with trio.fail_after(20), pytest.raises(tq.TaskCancelled):
            await b.wait_result(second)
        took = trio.current_time() - asked
        assert took < bound, f"the buffered task was cancelled after {took:.2f}s"
        stats = w.statistics()
        assert (stats.running, stats.prefetched, stats.released, stats.done) == (1, 0, 0, 0)
        task = await b.get_task(first)
        assert task is not None and task.status is Status.RUNNING
        task = await b.get_task(second)
        assert task is not None and task.started_at is None
        third = await b.push(3)  # the freed room is claimed again
        with trio.fail_after(20):
            async with aclosing(b.watch(third)) as snapshots:
                async for t in snapshots:
                    if t.status is Status.QUEUED:
                        break
        assert w.statistics().prefetched == 1
        w.stop(force=True)
    assert ran == [1]
    assert w.statistics().released == 2  # the buffered third at the stop, the running first
    task = await b.get_task(first)
    assert task is not None and task.status is Status.PENDING


async def test_a_buffered_task_cancelled_leaves_the_buffer_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with tq.MemoryBackend.open() as b:
        await _cancel_a_buffered_task(b, bound=0.1)


@pytest.mark.seconds
@pytest.mark.parametrize("open_backend", ["sqlite", "postgres"], indirect=True)
async def test_a_buffered_task_cancelled_on_a_durable_store_leaves_the_buffer_at_once(
    open_backend: Factory,
) -> None:
    async with open_backend() as b:
        await _cancel_a_buffered_task(b, bound=1.0)


async def test_a_handler_that_shields_itself_still_ends_cancelled(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    started = trio.Event()
    finish = trio.Event()

    async def stubborn(n: int) -> str:
        with trio.CancelScope(shield=True):
            started.set()
            await finish.wait()
        return "finished anyway"

    async with open_backend() as b:
        tid = await b.push(1)
        w = WorkerBuilder("stubborn").backend(b).lease(9).build(stubborn)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await started.wait()
            assert await b.cancel_task(tid)
            await trio.sleep(4)  # past one extension: the worker knows
            finish.set()
            with pytest.raises(tq.TaskCancelled):
                await b.wait_result(tid)
            w.stop()


async def test_a_snoozing_task_keeps_its_attempts(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    runs: list[int] = []

    async def waits_for_a_door(n: int, task: tq.Task[int]) -> int:
        runs.append(task.attempts)
        if len(runs) < 5:
            raise Snooze(10)
        return len(runs)

    async with open_backend() as b:
        tid = await b.push(1, max_attempts=2)
        w = WorkerBuilder("door").backend(b).build(waits_for_a_door)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            t0 = trio.current_time()
            assert await b.wait_result(tid) == 5
            assert trio.current_time() - t0 >= 40  # four snoozes of 10 s
            task = await b.get_task(tid)
            assert task is not None and task.status is Status.DONE and task.attempts == 1
            assert runs == [1, 1, 1, 1, 1]
            w.stop()


def test_a_snooze_past_the_bound_spends_the_attempt() -> None:
    assert decide(1, 3, Snooze(5), snoozes=MAX_SNOOZES - 1).label == SNOOZED
    past = decide(1, 3, Snooze(5), snoozes=MAX_SNOOZES)
    assert past.label == RETRY and past.status is Status.FAILED and past.delay == 5
    assert "snoozes" in (past.reason or "")


async def test_an_open_circuit_breaker_snoozes_instead_of_spending_attempts(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    from trioqueue.layers import CircuitBreakerLayer

    down = True
    runs: dict[str, int] = {}

    async def flaky(n: int, task: tq.Task[int]) -> int:
        runs[task.id] = runs.get(task.id, 0) + 1
        if down:
            raise ConnectionError("service down")
        return n

    async with open_backend() as b:
        breaker = CircuitBreakerLayer(failure_threshold=2, cool_down=30.0)
        ids = [await b.push(n, max_attempts=25) for n in range(8)]
        w = WorkerBuilder("sms").backend(b).layer(breaker).concurrency(1).build(flaky)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await trio.sleep(300)  # a long outage: the breaker is open most of it
            assert sum(runs.values()) <= 2 + 300 // 30 + 1  # only trials ran
            down = False
            for n, tid in enumerate(ids):
                assert await b.wait_result(tid) == n
            for tid in ids:
                task = await b.get_task(tid)
                # Every attempt spent is a run of the handler; snoozes spent none.
                assert task is not None and task.attempts == runs[tid], (task, runs[tid])
            w.stop()


async def test_progress_is_stored_and_reaches_a_watcher(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    step = trio.Event()

    async def convert(pages: int, progress: Progress) -> str:
        for i in range(pages):
            progress.set({"done": i + 1, "of": pages})
            await step.wait()
        return "converted"

    async with open_backend() as b:
        tid = await b.push(2)
        w = WorkerBuilder("conv").backend(b).lease(30).build(convert)
        seen: list[tuple[Status, object]] = []
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            async for task in b.watch(tid):
                seen.append((task.status, task.progress))
                if task.progress == {"done": 1, "of": 2}:
                    stored = trio.current_time()
                    step.set()
            assert seen[-1] == (Status.DONE, {"done": 2, "of": 2})
            assert (Status.RUNNING, {"done": 1, "of": 2}) in seen or (
                Status.QUEUED,
                {"done": 1, "of": 2},
            ) in seen
            assert stored < 2.0  # within about a second, not a third of the 30 s lease
            got = await b.get_task(tid)
            assert got is not None and got.progress == {"done": 2, "of": 2}
            w.stop()


def test_progress_refuses_a_value_that_is_not_json() -> None:
    p = Progress("t")
    with pytest.raises(TypeError, match="JSON-able"):
        p.set(object())
    p.set([1, "two"])
    assert p.value == [1, "two"]


async def test_a_finished_task_has_its_times_and_worker(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def slow(n: int) -> None:
        await trio.sleep(5)

    async with open_backend() as b:
        tid = await b.push(1, delay=2)
        w = WorkerBuilder("timer").backend(b).build(slow)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await b.wait_result(tid)
            w.stop()
        task = await b.get_task(tid)
        assert task is not None
        assert task.created_at and task.started_at and task.finished_at
        assert timedelta(seconds=2) <= task.started_at - task.created_at < timedelta(seconds=4)
        assert timedelta(seconds=5) <= task.finished_at - task.started_at < timedelta(seconds=6)
        assert task.worker is not None and task.worker.startswith("timer@")


async def test_pause_stops_claiming_and_resume_restarts_it(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    ran: list[int] = []

    async def record(n: int) -> None:
        ran.append(n)

    async with open_backend() as b:
        w = WorkerBuilder("p").backend(b).poll_interval(1.0).build(record)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await b.wait_result(await b.push(1))
            await b.pause()
            assert await b.paused() == [b.queue]
            tid = await b.push(2)
            await trio.sleep(60)
            assert ran == [1]
            task = await b.get_task(tid)
            assert task is not None and task.status is Status.PENDING
            await b.resume()
            assert await b.paused() == []
            resumed = trio.current_time()
            await b.wait_result(tid)
            assert trio.current_time() - resumed <= 1.5  # within a poll interval
            assert ran == [1, 2]
            w.stop()


async def test_workers_lists_live_workers_and_forgets_stopped_and_dead_ones(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def noop(n: int) -> None:
        pass

    async with open_backend() as b:
        w = WorkerBuilder("alive").backend(b).concurrency(3).build(noop)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await b.wait_result(await b.push(1))  # the worker registered before claiming
            live = await b.workers()
            assert [x.name.split("@")[0] for x in live] == ["alive"]
            assert live[0].concurrency == 3 and live[0].queue == b.queue
            assert live[0].pid > 0 and live[0].host
            first_seen = live[0].last_seen
            await trio.sleep(25)
            again = await b.workers()
            assert again and again[0].last_seen > first_seen  # refreshed
            w.stop()
        assert await b.workers() == []  # a stopped worker removes its entry
        # A worker that dies leaves its entry: it stops being listed once stale.
        await b.driver.register_worker(
            tq._driver.WorkerRecord("dead@host:1", "host", 1, b.queue, 1, 0, b.driver.now())
        )
        assert [x.name for x in await b.workers()] == ["dead@host:1"]
        await trio.sleep(31)
        assert await b.workers() == []


async def test_retention_prunes_exactly_what_is_past_it(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def maybe(n: int) -> int:
        if n < 0:
            raise tq.Abort("negative")
        return n

    retention = tq.Retention(
        done=timedelta(seconds=100), killed=timedelta(seconds=300), cancelled=None, interval=5
    )
    async with open_backend(retention=retention) as b:
        done_old = await b.push(1)
        killed_old = await b.push(-1)
        cancelled = await b.push(2, delay=10)
        assert await b.cancel_task(cancelled)
        w = WorkerBuilder("keeper").backend(b).build(maybe)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await b.wait_result(done_old)
            with pytest.raises(tq.TaskFailed):
                await b.wait_result(killed_old)
            await trio.sleep(60)
            done_new = await b.push(3)
            await b.wait_result(done_new)
            await trio.sleep(60)  # done_old is 120 s old, done_new 60 s
            assert await b.get_task(done_old) is None
            assert await b.get_task(done_new) is not None
            assert await b.get_task(killed_old) is not None
            await trio.sleep(200)
            assert await b.get_task(killed_old) is None
            assert await b.get_task(cancelled) is not None  # kept forever
            w.stop()


async def test_if_exists_modes(autojump_clock: trio.abc.Clock, open_backend: Factory) -> None:
    async def double(n: int) -> int:
        return 2 * n

    async with open_backend() as b:
        assert await b.push(1, id="job") == "job"
        assert await b.push(2, id="job") == "job"  # skip: nothing new
        with pytest.raises(tq.DuplicateTask) as dup:
            await b.push(3, id="job", if_exists="raise")
        assert dup.value.id == "job" and dup.value.status is Status.PENDING
        await b.push(4, id="job", if_exists="replace_finished")  # not finished: kept
        w = WorkerBuilder("d").backend(b).build(double)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            assert await b.wait_result("job") == 2
            with pytest.raises(tq.DuplicateTask) as dup:
                await b.push_task(tq.Task(5, id=tq.TaskId("job")), if_exists="raise")
            assert dup.value.status is Status.DONE
            await b.push(6, id="job", if_exists="replace_finished")
            assert await b.wait_result("job") == 12
            w.stop()
        with pytest.raises(ValueError, match="if_exists"):
            await b.push(1, if_exists="overwrite")  # type: ignore[arg-type]
        tasks = [tq.Task(n, id=tq.TaskId(f"bulk-{n}")) for n in range(5)]
        assert await b.push_all(tasks[:2]) == 2
        assert await b.push_all(tasks) == 3  # counts only what it stored
