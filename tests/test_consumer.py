"""The consumer's side of a lease: a prefetched task whose lease ran out is never started."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from backend_factories import Factory

from trioqueue import Attempt, Status, WorkerBuilder

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
