"""Worker behaviour on the memory backend, on Trio's autojump clock."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from backend_factories import Factory
from conftest import Tally

import trioqueue as tq
from trioqueue import Attempt, EventKind, Status, TaskId, WorkerBuilder


@dataclass
class Job:
    name: str
    count: int = 0


NO_ID = TaskId("none")


async def run_until(
    worker: tq.Worker, tally: Tally, kind: EventKind, n: int = 1, *, within: float
) -> None:
    """Run ``worker`` until ``tally`` saw ``n`` events of ``kind``, then stop it gracefully."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.run)
        with trio.fail_after(within):
            await tally.wait(kind, n)
        worker.stop()


def builder(backend: tq.Backend, name: str = "w") -> WorkerBuilder:
    return WorkerBuilder(name).backend(backend)


async def test_priority_then_run_at_order(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    order: list[tuple[str, float]] = []

    async def handler(job: Job) -> None:
        order.append((job.name, trio.current_time()))

    async with open_backend() as b:
        t0 = trio.current_time()
        await b.push(Job("low"), priority=0)
        await b.push(Job("high"), priority=10)
        await b.push(Job("mid"), priority=5)
        await b.push(Job("later-high"), priority=100, delay=3)
        await b.push(Job("soon"), priority=0, delay=1)
        w = builder(b).concurrency(1).on_event(tally).build(handler)
        await run_until(w, tally, EventKind.TASK_DONE, 5, within=100)
    assert [name for name, _ in order] == ["high", "mid", "low", "soon", "later-high"]
    times = dict(order)
    assert times["soon"] - t0 == pytest.approx(1, abs=0.25)
    assert times["later-high"] - t0 == pytest.approx(3, abs=0.25)


async def test_retry_with_backoff_persists_attempts(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    runs: list[tuple[int, float]] = []
    states: list[tuple[Status, int, str | None]] = []

    async def flaky(job: Job, attempt: Attempt, task_id: TaskId) -> str:
        runs.append((attempt, trio.current_time()))
        if attempt > 1:
            seen = await b.get_task(task_id)
            assert seen is not None
            states.append((seen.status, seen.attempts, seen.last_error))
        if attempt < 3:
            raise RuntimeError(f"boom {attempt}")
        return "ok"

    async with open_backend() as b:
        tid = await b.push(Job("flaky"))
        w = builder(b).backoff(tq.Exponential(base=1, jitter=False)).on_event(tally).build(flaky)
        await run_until(w, tally, EventKind.TASK_DONE, within=1000)
        task = await b.get_task(tid)
    assert task is not None
    assert (task.status, task.attempts, task.result) == (Status.DONE, 3, "ok")
    assert [a for a, _ in runs] == [1, 2, 3]
    # exponential: 1 s after the first failure, 2 s after the second
    assert runs[1][1] - runs[0][1] == pytest.approx(1, abs=0.25)
    assert runs[2][1] - runs[1][1] == pytest.approx(2, abs=0.25)
    # while running again, storage shows the attempt and the last error persisted
    # (RUNNING is written in the next batch after the task starts)
    assert [s[1:] for s in states] == [(2, "RuntimeError: boom 1"), (3, "RuntimeError: boom 2")]
    assert {s[0] for s in states} <= {Status.QUEUED, Status.RUNNING}


async def test_default_backoff_is_exponential_with_jitter() -> None:
    policy = tq.Exponential(rng=random.Random(7))
    delays = [policy.delay(a) for a in range(1, 8)]
    for attempt, d in enumerate(delays, start=1):
        full = 2 ** (attempt - 1)
        assert full / 2 <= d <= full
    assert len({round(d / 2**i, 6) for i, d in enumerate(delays)}) > 1  # jittered


async def test_max_attempts_then_killed(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    calls = 0

    async def always_fails(job: Job) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("nope")

    async with open_backend() as b:
        tid = await b.push(Job("x"), max_attempts=3)
        w = builder(b).backoff(tq.Fixed(1)).on_event(tally).build(always_fails)
        await run_until(w, tally, EventKind.TASK_KILLED, within=100)
        task = await b.get_task(tid)
    assert task is not None
    assert (task.status, task.attempts, calls) == (Status.KILLED, 3, 3)
    assert task.last_error == "ValueError: nope"
    assert w.statistics().killed == 1 and w.statistics().failed == 2


async def test_abort_kills_at_once(autojump_clock: trio.abc.Clock, open_backend: Factory) -> None:
    async def handler(job: Job) -> None:
        raise tq.Abort("bad customer")

    async with open_backend() as b:
        tid = await b.push(Job("x"))
        await builder(b).build(handler).run(burst=True)
        task = await b.get_task(tid)
    assert task is not None
    assert (task.status, task.attempts, task.last_error) == (
        Status.KILLED, 1, "aborted: bad customer",
    )  # fmt: skip


@pytest.mark.seconds
async def test_retry_after_sets_the_next_run(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    times: list[float] = []

    async def handler(job: Job, attempt: Attempt) -> int:
        times.append(trio.current_time())
        if attempt == 1:
            raise tq.RetryAfter(4, "rate limited")
        return attempt

    async with open_backend() as b:
        tid = await b.push(Job("x"))
        w = builder(b).on_event(tally).build(handler)
        await run_until(w, tally, EventKind.TASK_DONE, within=100)
        task = await b.get_task(tid)
    assert task is not None and task.result == 2 and task.status is Status.DONE
    assert times[1] - times[0] == pytest.approx(4, abs=0.25)


async def test_undecodable_payloads_are_killed_and_the_worker_goes_on(
    autojump_clock: trio.abc.Clock,
    open_backend: Factory,
) -> None:
    done: list[str] = []

    async def handler(job: Job) -> None:
        done.append(job.name)

    async with open_backend() as b:
        wrong_type = await b.push({"name": 5})
        missing = await b.push({"count": 1})
        raw = tq.StoredTask(id="raw", queue="default", payload=b"\xff\x00not json")
        await b.driver.insert([raw])
        good = await b.push(Job("fine"))
        await builder(b).build(handler).run(burst=True)
        tasks = {t: await b.get_task(t) for t in (wrong_type, missing, "raw", good)}
    assert done == ["fine"]
    assert tasks[good].status is Status.DONE  # type: ignore[union-attr]
    for tid in (wrong_type, missing, "raw"):
        assert tasks[tid].status is Status.KILLED, tid  # type: ignore[union-attr]
        assert tasks[tid].attempts == 1  # type: ignore[union-attr]
    assert "`$.name`" in tasks[wrong_type].last_error  # type: ignore[union-attr,operator]
    assert "Job" in tasks[wrong_type].last_error  # type: ignore[union-attr,operator]
    assert "name" in tasks[missing].last_error  # type: ignore[union-attr,operator]
    assert "not valid JSON" in tasks["raw"].last_error  # type: ignore[union-attr,operator]


async def test_events_are_emitted(autojump_clock: trio.abc.Clock, open_backend: Factory) -> None:
    events: list[tuple[EventKind, str | None]] = []

    async def handler(job: Job, attempt: Attempt) -> None:
        if job.name == "fail" and attempt == 1:
            raise RuntimeError("x")
        if job.name == "kill":
            raise tq.Abort("k")

    async with open_backend() as b:
        ids = {name: await b.push(Job(name)) for name in ("ok", "fail", "kill")}
        w = (
            builder(b)
            .concurrency(1)
            .backoff(tq.Fixed(0))
            .on_event(lambda e: events.append((e.kind, e.task_id)))
            .build(handler)
        )
        await w.run(burst=True)
    kinds = [k for k, _ in events]
    assert kinds[0] is EventKind.START and kinds[-1] is EventKind.STOP
    assert (EventKind.TASK_DONE, ids["ok"]) in events
    assert (EventKind.TASK_FAILED, ids["fail"]) in events
    assert events.count((EventKind.TASK_DONE, ids["fail"])) == 1
    assert (EventKind.TASK_KILLED, ids["kill"]) in events
    assert EventKind.IDLE in kinds


@pytest.mark.seconds
async def test_lease_is_extended_while_a_long_task_runs(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    runs = 0

    async def slow(job: Job) -> None:
        nonlocal runs
        runs += 1
        await trio.sleep(10)

    async with open_backend() as b:
        tid = await b.push(Job("slow"))
        w1 = builder(b, "w1").lease(1).on_event(tally).build(slow)
        w2 = builder(b, "w2").lease(1).on_event(tally).build(slow)
        async with trio.open_nursery() as n:
            await n.start(w1.serve)
            await n.start(w2.serve)  # w2 rescues expired leases; it must find none
            await trio.sleep(5)
            assert (await b.get_task(tid)).status is Status.RUNNING  # type: ignore[union-attr]
            with trio.fail_after(500):
                await tally.wait(EventKind.TASK_DONE)
            w1.stop()
            w2.stop()
        t = await b.get_task(tid)
    assert runs == 1
    assert t is not None and t.status is Status.DONE and t.attempts == 1


@pytest.mark.seconds
async def test_an_expired_lease_is_rescued_and_counts(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    async def handler(job: Job, attempt: Attempt) -> int:
        return attempt

    async with open_backend() as b:
        tid = await b.push(Job("orphan"))
        once = await b.push(Job("one-shot"), max_attempts=1)
        # a worker that claims and then dies: nobody extends or settles its lease
        claimed = await b.driver.claim("default", 10, "dead-token", 5.0)
        assert {r.id for r in claimed} == {tid, once}
        w = builder(b).lease(5).on_event(tally).build(handler)
        await run_until(w, tally, EventKind.TASK_DONE, within=100)
        t = await b.get_task(tid)
        killed = await b.get_task(once)
        # the dead worker's late outcome is refused: compare-and-set on the lease
        late = [tq.Outcome(tid, Status.FAILED, error="late")]
        assert await b.driver.settle(late, "dead-token") == []
    assert t is not None and t.status is Status.DONE
    assert t.result == 2 and t.attempts == 2  # the lost attempt counted
    assert killed is not None and killed.status is Status.KILLED
    assert "lease expired" in (killed.last_error or "")


@pytest.mark.seconds
async def test_concurrency_and_holding_are_bounded(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    concurrency, prefetch = 4, 3
    running = peak = 0
    peak_held = 0
    rng = random.Random(1)

    async def handler(job: Job) -> None:
        nonlocal running, peak, peak_held
        running += 1
        peak = max(peak, running)
        counts = (await b.counts()).get("default", {})
        peak_held = max(peak_held, counts.get(Status.QUEUED, 0) + counts.get(Status.RUNNING, 0))
        await trio.sleep(rng.random() / 4)
        running -= 1

    async with open_backend() as b:
        await b.push_bulk(Job(str(i)) for i in range(60))
        w = builder(b).concurrency(concurrency).prefetch(prefetch).build(handler)
        await w.run(burst=True)
        assert await b.counts() == {"default": {Status.DONE: 60}}
    assert peak == concurrency
    assert concurrency < peak_held <= concurrency + prefetch


async def test_default_concurrency_is_bounded(memory_backend: tq.MemoryBackend) -> None:
    async def handler(job: Job) -> None:
        return None

    w = builder(memory_backend).build(handler)
    assert w.concurrency == tq.DEFAULT_CONCURRENCY == 10
    assert w.prefetch == 10


async def test_repr_and_statistics_show_live_state(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    started = trio.Event()
    release = trio.Event()

    async def handler(job: Job, ctx: tq.WorkerContext) -> None:
        started.set()
        await release.wait()

    async with open_backend() as b:
        await b.push(Job("x"))
        w = builder(b, "stats").concurrency(2).build(handler)
        async with trio.open_nursery() as n:
            await n.start(w.serve)
            await started.wait()
            stats = w.context.statistics()
            assert (stats.name, stats.running, stats.concurrency) == ("stats", 1, 2)
            assert "running=1/2" in repr(w)
            release.set()
            w.context.stop()
        assert w.statistics().done == 1 and w.statistics().shutting_down


@pytest.mark.parametrize("codec", [tq.JsonCodec(), tq.CborCodec()], ids=["json", "cbor"])
async def test_typed_round_trip_per_codec(
    codec: Any, autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    got: list[Job] = []

    async def handler(job: Job) -> dict[str, int]:
        got.append(job)
        return {"n": job.count * 2}

    async with open_backend(codec=codec) as b:
        tid = await b.push(Job("typed", 21))
        await builder(b).build(handler).run(burst=True)
        task = await b.get_task(tid)
    assert got == [Job("typed", 21)] and isinstance(got[0], Job)
    assert task is not None and task.result == {"n": 42}


@pytest.mark.seconds
async def test_worker_timeout_fails_the_attempt_and_retries(
    autojump_clock: trio.abc.Clock, tally: Tally, open_backend: Factory
) -> None:
    starts: list[float] = []

    async def slow_then_fast(job: Job, attempt: Attempt) -> int:
        starts.append(trio.current_time())
        if attempt == 1:
            await trio.sleep(100)
        return attempt

    async with open_backend() as b:
        tid = await b.push(Job("x"))
        w = builder(b).timeout(5).backoff(tq.Fixed(3)).on_event(tally).build(slow_then_fast)
        await run_until(w, tally, EventKind.TASK_DONE, within=100)
        t = await b.get_task(tid)
    assert t is not None and t.status is Status.DONE
    assert t.last_error == "TaskTimeout: attempt 1 ran past its 5s deadline"
    assert t.result == 2 and t.attempts == 2
    assert starts[1] - starts[0] == pytest.approx(8, abs=0.01)  # 5 s deadline + 3 s backoff
    assert w.statistics().failed == 1


async def test_a_worker_can_run_again_after_it_stopped(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    seen: list[int] = []

    async def handler(n: int) -> None:
        seen.append(n)

    async with open_backend() as b:
        w = builder(b).build(handler)
        await b.push(1)
        await w.run(burst=True)
        await b.push(2)
        await w.run(burst=True)
    assert seen == [1, 2]


async def test_a_stop_between_runs_applies_to_the_next_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[int] = []

    async def handler(n: int) -> None:
        seen.append(n)

    async with tq.MemoryBackend.open() as b:
        w = builder(b).build(handler)
        await b.push(1)
        await w.run(burst=True)
        await b.push(2)
        w.stop()
        with trio.fail_after(5):
            await w.run()  # stops at once: the stop was asked before it started
        assert seen == [1]
        assert await b.counts() == {"default": {Status.DONE: 1, Status.PENDING: 1}}


async def test_a_skipped_parameter_does_not_shift_the_injected_ones(
    autojump_clock: trio.abc.Clock,
) -> None:
    got: list[tuple[int, int, str]] = []

    async def handler(n: int, x: int = 7, tid: TaskId = NO_ID) -> None:
        got.append((n, x, tid))

    async with tq.MemoryBackend.open() as b:
        tid = await b.push(1)
        await builder(b).build(handler).run(burst=True)
    assert got == [(1, 7, tid)]


async def test_unstorable_error_texts_are_made_storable(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def handler(n: int) -> None:
        raise ValueError("bad \x00 byte and a lone \udcff surrogate")

    async with open_backend() as b:
        tid = await b.push(1, max_attempts=1)
        ok = await b.push(2, max_attempts=1)
        w = builder(b).concurrency(2).build(handler)
        with trio.fail_after(60):
            await w.run(burst=True)
        task = await b.get_task(tid)
        other = await b.get_task(ok)
    assert task is not None and task.status is Status.KILLED
    assert task.last_error == "ValueError: bad \\x00 byte and a lone \\udcff surrogate"
    assert other is not None and other.status is Status.KILLED


async def test_a_task_pushed_with_another_codec_is_left_for_a_worker_with_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    from trioqueue import CborCodec, JsonCodec
    from trioqueue._accounting import OTHER_CODEC_SNOOZE
    from trioqueue._sink import CODEC_KEY

    ran: list[object] = []

    async def handler(n: int) -> None:
        ran.append(n)

    async with tq.MemoryBackend.open(codec=CborCodec()) as cbor:
        tid = await cbor.push(7)
        plain = await cbor.push_bulk([8])
        stored = await cbor.get_task(tid)
        assert stored is not None and stored.meta == {CODEC_KEY: "cbor"}
        # A JSON worker on the same store: the task is not killed, nor run.
        json_view = tq.Backend(cbor.driver, codec=JsonCodec())
        async with json_view.running():
            w = WorkerBuilder("json").backend(json_view).build(handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(w.serve)
                await trio.sleep(OTHER_CODEC_SNOOZE / 2)
                w.stop()
        for id in (tid, plain[0]):
            task = await cbor.get_task(id)
            assert task is not None and task.status is Status.PENDING and task.attempts == 0
            assert task.run_at is not None
        assert ran == []
        # The CBOR worker runs them once their snooze is over.
        w = WorkerBuilder("cbor").backend(cbor).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await cbor.wait_result(tid)
            await cbor.wait_result(plain[0])
            w.stop()
        assert sorted(ran) == [7, 8]  # type: ignore[type-var]
        # And the other way: a JSON task (no codec named) is left by the CBOR worker.
        json_view = tq.Backend(cbor.driver, codec=JsonCodec())
        async with json_view.running():
            jid = await json_view.push(9)
        ran.clear()
        w = WorkerBuilder("cbor").backend(cbor).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await trio.sleep(OTHER_CODEC_SNOOZE / 2)
            w.stop()
        task = await cbor.get_task(jid)
        assert task is not None and task.status is Status.PENDING and task.attempts == 0
        assert ran == []
