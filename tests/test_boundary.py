"""An attempt's boundary: its own deadline fails it; a cancel from outside the worker releases it.

Every backend, on Trio's autojump clock. The outer cancel comes once every
slot runs a task and the rest wait in the prefetch channel, so running and
buffered tasks are both given back; a final uninterrupted run then does each
task exactly once, on its first counted attempt.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
from backend_factories import Factory

import trioqueue as tq
from trioqueue import Status, WorkerBuilder
from trioqueue._boundary import cancelled_outside
from trioqueue.layers import LogLayer, TimeoutLayer

TASKS = 5
SLOTS = 2


class Stuck:
    """A handler that blocks until released, and tells when every slot runs one."""

    def __init__(self) -> None:
        self.stuck = True
        self.running = 0
        self.all_running = trio.Event()
        self.done: list[int] = []

    async def handle(self, n: int) -> int:
        if self.stuck:
            self.running += 1
            if self.running == SLOTS:
                self.all_running.set()
            await trio.sleep_forever()
        self.done.append(n)
        return n


@asynccontextmanager
async def outer(how: str) -> AsyncIterator[trio.CancelScope]:
    """A cancel scope around the worker of kind ``how``, far away until the test moves it."""
    if how == "fail_after":
        with pytest.raises(trio.TooSlowError), trio.fail_after(3600) as scope:
            yield scope
    else:
        with trio.move_on_after(3600) as scope:
            yield scope


async def run_cut(worker: tq.Worker, stuck: Stuck, how: str) -> None:
    """Run ``worker`` until every slot runs a task, then cancel it from outside, by ``how``."""
    if how == "nursery":
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            await stuck.all_running.wait()
            nursery.cancel_scope.cancel()
        return
    run = worker.run
    if how == "monitor":
        run = tq.Monitor(signals=()).register(worker).run
    async with outer(how) as scope, trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await stuck.all_running.wait()
        scope.deadline = trio.current_time() + 1  # a deadline, as move_on_after(1) gives
        await trio.sleep_forever()


async def assert_released_then_done(b: tq.Backend, ids: Sequence[str], stuck: Stuck) -> None:
    for id in ids:
        task = await b.get_task(id)
        assert task is not None
        assert (task.status, task.attempts, task.last_error) == (Status.PENDING, 0, None), id
    stuck.stuck = False
    await WorkerBuilder("again").backend(b).build(stuck.handle).run(burst=True)
    assert sorted(stuck.done) == list(range(TASKS))
    for id in ids:
        task = await b.get_task(id)
        assert task is not None
        assert (task.status, task.attempts) == (Status.DONE, 1), id


def counted_released(stats: tq.WorkerStatistics, b: tq.Backend) -> bool:
    """Whether the worker counted every task it gave back, the prefetched ones too.

    On a database a claim may still be on its way when the cancel comes: the
    consumer gives those back itself, unseen by the worker (all are checked
    in storage after).
    """
    if isinstance(b, tq.MemoryBackend):
        return stats.released == TASKS
    return SLOTS <= stats.released <= TASKS


def outcomes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.outcome for r in caplog.records if hasattr(r, "outcome")]


@pytest.mark.parametrize("how", ["move_on_after", "fail_after", "nursery", "monitor"])
async def test_a_cancel_from_outside_releases_running_and_buffered_tasks_unspent(
    autojump_clock: trio.abc.Clock,
    open_backend: Factory,
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioqueue.task")
    stuck = Stuck()
    async with open_backend() as b:
        ids = [await b.push(i, max_attempts=1) for i in range(TASKS)]
        w = (
            WorkerBuilder("w")
            .backend(b)
            .layer(LogLayer())
            .concurrency(SLOTS)
            .prefetch(TASKS - SLOTS)
            .build(stuck.handle)
        )
        await run_cut(w, stuck, how)
        stats = w.statistics()
        assert (stats.failed, stats.killed) == (0, 0)
        assert counted_released(stats, b)
        assert outcomes(caplog) == ["released"] * SLOTS
        await assert_released_then_done(b, ids, stuck)


@pytest.mark.parametrize("where", ["worker timeout", "layer timeout"])
async def test_an_outer_deadline_before_the_tasks_own_releases_it(
    autojump_clock: trio.abc.Clock,
    open_backend: Factory,
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioqueue.task")
    stuck = Stuck()
    async with open_backend() as b:
        ids = [await b.push(i, max_attempts=1) for i in range(TASKS)]
        builder = WorkerBuilder("w").backend(b).layer(LogLayer())
        builder.concurrency(SLOTS).prefetch(TASKS - SLOTS)
        if where == "worker timeout":
            builder.timeout(10)
        else:
            builder.layer(TimeoutLayer(10)).layer(LogLayer())  # a log inside the timeout too
        w = builder.build(stuck.handle)
        await run_cut(w, stuck, "move_on_after")
        stats = w.statistics()
        assert (stats.failed, stats.killed) == (0, 0)
        assert counted_released(stats, b)
        assert set(outcomes(caplog)) == {"released"}
        await assert_released_then_done(b, ids, stuck)


@pytest.mark.parametrize("where", ["worker timeout", "layer timeout"])
async def test_the_tasks_own_deadline_still_times_it_out_inside_an_outer_scope(
    autojump_clock: trio.abc.Clock,
    open_backend: Factory,
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trioqueue.task")
    stuck = Stuck()
    async with open_backend() as b:
        id = await b.push(1, max_attempts=2)
        builder = WorkerBuilder("w").backend(b).layer(LogLayer()).backoff(tq.Fixed(0))
        if where == "worker timeout":
            builder.timeout(1)
        else:
            builder.layer(TimeoutLayer(1)).layer(LogLayer())
        with trio.move_on_after(3600) as scope:
            await builder.build(stuck.handle).run(burst=True)
        assert not scope.cancelled_caught
        task = await b.get_task(id)
    assert task is not None
    assert (task.status, task.attempts) == (Status.KILLED, 2)
    assert task.last_error is not None and task.last_error.startswith("TaskTimeout: ")
    logs = 1 if where == "worker timeout" else 2  # the log inside the timeout layer agrees
    assert outcomes(caplog) == ["failed"] * logs + ["killed"] * logs


async def test_trio_still_says_whether_a_scope_is_cancelled_from_outside() -> None:
    # The boundary reads Trio's CancelStatus, which Trio keeps private: this
    # fails first if a Trio release moves it.
    with trio.CancelScope() as around, trio.CancelScope() as inner:
        assert not cancelled_outside(inner)
        inner.cancel()
        assert not cancelled_outside(inner)
        around.cancel()
        assert cancelled_outside(inner)
        assert not cancelled_outside(around)
        await trio.lowlevel.checkpoint()  # the Cancelled goes past inner: around catches it
    assert around.cancelled_caught and not inner.cancelled_caught
