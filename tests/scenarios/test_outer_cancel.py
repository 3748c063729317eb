"""Random cancels from outside never spend, fail or kill a task.

A Trio app runs workers of random shapes over a queue and cancels each from
outside at a random moment: a ``move_on_after`` (or ``fail_after``) around
``worker.run()``, or a nursery around ``worker.serve`` cancelled. Whatever the
moment (before the first claim, while tasks run or wait in the prefetch
channel, while a layer's timeout or the worker's own runs, while outcomes are
being written), no attempt is counted and no task fails or dies for it: every
task has ``max_attempts=1``, so a spent attempt would kill it. A final
uninterrupted run then does each task exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
import trio
from backend_factories import Factory

import trioqueue as tq
from trioqueue import Status, WorkerBuilder
from trioqueue.layers import LogLayer, TimeoutLayer

#: How long a handler takes: instant, a checkpoint, or long enough to be cut.
DURATIONS = (0.0, 0.001, 0.05, 0.3, 1.0, 2.5)


async def cut_from_outside(worker: tq.Worker, rng: random.Random) -> None:
    """Run ``worker`` and cancel it from outside after a random time."""
    cut = rng.choice((0.0, 0.0005, rng.uniform(0, 0.1), rng.uniform(0, 3)))
    burst = rng.random() < 0.3
    how = rng.choice(("move_on_after", "fail_after", "nursery"))
    if how == "move_on_after":
        with trio.move_on_after(cut):
            await worker.run(burst=burst)
    elif how == "fail_after":
        try:
            with trio.fail_after(cut):
                await worker.run(burst=burst)
        except trio.TooSlowError:
            pass
    else:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.serve)
            await trio.sleep(cut)
            nursery.cancel_scope.cancel()


async def assert_nothing_spent(b: tq.Backend, ids: Sequence[str], done: Counter[int]) -> None:
    for n, id in enumerate(ids):
        task = await b.get_task(id)
        assert task is not None
        if task.status is Status.DONE:
            assert (task.attempts, done[n]) == (1, 1), (id, task)
        else:
            assert (task.status, task.attempts, task.last_error) == (Status.PENDING, 0, None), task
            assert done[n] == 0, (id, task)


async def outer_cancels(b: tq.Backend, seed: int, *, rounds: int, tasks: int) -> None:
    rng = random.Random(seed)
    durations = [rng.choice(DURATIONS) for _ in range(tasks)]
    done: Counter[int] = Counter()

    async def work(n: int) -> int:
        await trio.sleep(durations[n])
        done[n] += 1
        return n

    ids = [await b.push(n, max_attempts=1) for n in range(tasks)]
    for _ in range(rounds):
        builder = WorkerBuilder("w").backend(b).concurrency(rng.randint(1, 4))
        builder.prefetch(rng.randint(1, 4))
        if rng.random() < 0.5:
            builder.layer(LogLayer())
        if rng.random() < 0.4:
            builder.timeout(60)  # the worker's own deadline: never reached
        if rng.random() < 0.4:
            builder.layer(TimeoutLayer(60))  # a layer's: never reached either
        worker = builder.build(work)
        await cut_from_outside(worker, rng)
        stats = worker.statistics()
        assert (stats.failed, stats.killed) == (0, 0), (seed, stats)
        await assert_nothing_spent(b, ids, done)
    await WorkerBuilder("last").backend(b).concurrency(4).build(work).run(burst=True)
    assert done == Counter(range(tasks)), seed
    assert await b.counts() == {b.queue: {Status.DONE: tasks}}
    await assert_nothing_spent(b, ids, done)


@pytest.mark.parametrize("open_backend", ["memory"], indirect=True)
@pytest.mark.parametrize("seed", range(12))
async def test_outer_cancels_spend_nothing(
    autojump_clock: trio.abc.Clock, open_backend: Factory, seed: int
) -> None:
    async with open_backend() as b:
        await outer_cancels(b, seed, rounds=8, tasks=12)


@pytest.mark.seconds
@pytest.mark.parametrize("open_backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("seed", range(2))
async def test_outer_cancels_spend_nothing_on_sqlite(
    autojump_clock: trio.abc.Clock, open_backend: Factory, seed: int
) -> None:
    async with open_backend() as b:
        await outer_cancels(b, seed, rounds=5, tasks=8)


@pytest.mark.slow
@pytest.mark.parametrize("open_backend", ["memory"], indirect=True)
@pytest.mark.parametrize("seed", range(1000, 1400))
async def test_outer_cancels_spend_nothing_long(
    autojump_clock: trio.abc.Clock, open_backend: Factory, seed: int
) -> None:
    async with open_backend() as b:
        await outer_cancels(b, seed, rounds=20, tasks=30)
