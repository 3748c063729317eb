"""ConcurrencyLimitLayer and RateLimitLayer: bounds that hold across workers sharing the layer."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import pytest
import trio

from trioqueue import MemoryBackend, Status, WorkerBuilder
from trioqueue.layers import ConcurrencyLimitLayer, RateLimitLayer


class Gauge:
    """Counts tasks inside the handler and remembers the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.starts: list[float] = []

    async def handler(self, x: int) -> None:
        self.starts.append(trio.current_time())
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await trio.sleep(1)
        finally:
            self.now -= 1


async def test_concurrency_limit_bounds_the_tasks_running(autojump_clock: trio.abc.Clock) -> None:
    gauge = Gauge()
    async with MemoryBackend.open() as backend:
        await backend.push_bulk(range(30))
        worker = (
            WorkerBuilder("w")
            .backend(backend)
            .layer(ConcurrencyLimitLayer(3))
            .concurrency(10)
            .build(gauge.handler)
        )
        await worker.run(burst=True)
        counts = await backend.counts()
    assert gauge.most == 3
    assert counts["default"].get(Status.DONE) == 30
    # 30 tasks of 1 s, 3 at a time: 10 rounds.
    assert max(gauge.starts) - min(gauge.starts) == pytest.approx(9.0)


async def test_one_layer_object_shares_its_limit_across_workers(
    autojump_clock: trio.abc.Clock,
) -> None:
    gauge = Gauge()
    shared = ConcurrencyLimitLayer(4)
    async with MemoryBackend.open(queue="a") as a, MemoryBackend.open(queue="b") as b:
        await a.push_bulk(range(20))
        await b.push_bulk(range(20))
        workers = [
            WorkerBuilder(name).backend(be).layer(shared).concurrency(8).build(gauge.handler)
            for name, be in (("wa", a), ("wb", b))
        ]
        async with trio.open_nursery() as nursery:
            for w in workers:
                nursery.start_soon(partial(w.run, burst=True))
    assert gauge.most == 4
    assert len(gauge.starts) == 40


async def _max_held_while_running(
    layer: Any, *, concurrency: int, prefetch: int, tasks: int
) -> tuple[int, Gauge]:
    """Run ``tasks`` tasks through ``layer``; return the most QUEUED+RUNNING seen in storage."""
    gauge = Gauge()
    most = 0
    async with MemoryBackend.open() as backend:
        await backend.push_bulk(range(tasks))
        worker = (
            WorkerBuilder("w")
            .backend(backend)
            .layer(layer)
            .concurrency(concurrency)
            .prefetch(prefetch)
            .build(gauge.handler)
        )

        async def sample() -> None:
            nonlocal most
            while True:
                c = (await backend.counts()).get("default", {})
                most = max(most, c.get(Status.QUEUED, 0) + c.get(Status.RUNNING, 0))
                await trio.sleep(0.1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            await worker.run(burst=True)
            nursery.cancel_scope.cancel()
    return most, gauge


@pytest.mark.parametrize(
    "layer", [ConcurrencyLimitLayer(1), RateLimitLayer(1, per=2.0)], ids=["concurrency", "rate"]
)
async def test_waiting_for_a_permit_holds_no_more_than_slots_and_prefetch(
    autojump_clock: trio.abc.Clock, layer: Any
) -> None:
    most, gauge = await _max_held_while_running(layer, concurrency=4, prefetch=3, tasks=40)
    assert len(gauge.starts) == 40
    assert gauge.most == 1
    assert 4 < most <= 4 + 3


async def test_rate_limit_starts_at_most_n_per_window(autojump_clock: trio.abc.Clock) -> None:
    gauge = Gauge()
    async with MemoryBackend.open() as backend:
        await backend.push_bulk(range(25))
        worker = (
            WorkerBuilder("w")
            .backend(backend)
            .layer(RateLimitLayer(5, per=2.0))
            .concurrency(10)
            .build(gauge.handler)
        )
        await worker.run(burst=True)
    t0 = gauge.starts[0]
    by_time = Counter(round(t - t0, 6) for t in gauge.starts)
    assert by_time == {0.0: 5, 2.0: 5, 4.0: 5, 6.0: 5, 8.0: 5}
    starts = sorted(gauge.starts)
    assert all(b - a >= 2.0 - 1e-9 for a, b in zip(starts, starts[5:], strict=False))


async def test_rate_is_shared_by_workers_built_with_one_layer(
    autojump_clock: trio.abc.Clock,
) -> None:
    gauge = Gauge()
    shared = RateLimitLayer(3, per=1.0)
    async with MemoryBackend.open(queue="a") as a, MemoryBackend.open(queue="b") as b:
        await a.push_bulk(range(9))
        await b.push_bulk(range(9))
        workers = [
            WorkerBuilder(n).backend(be).layer(shared).concurrency(5).build(gauge.handler)
            for n, be in (("wa", a), ("wb", b))
        ]
        async with trio.open_nursery() as nursery:
            for w in workers:
                nursery.start_soon(partial(w.run, burst=True))
    starts = sorted(gauge.starts)
    assert len(starts) == 18
    assert all(b - a >= 1.0 - 1e-9 for a, b in zip(starts, starts[3:], strict=False))
    assert starts[-1] - starts[0] == pytest.approx(5.0)


def test_limits_reject_bad_configuration() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            ConcurrencyLimitLayer(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            RateLimitLayer(bad, per=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RateLimitLayer(1, per=0)
