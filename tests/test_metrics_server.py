"""The queue depth collector and the ``/metrics`` endpoint: sample values in a fresh registry."""

from __future__ import annotations

import urllib.request
from functools import partial

import pytest
import trio
from prometheus_client import CollectorRegistry

from trioqueue import (
    MemoryBackend,
    QueueDepthCollector,
    WorkerBuilder,
    collect_queue_depth,
    serve_metrics,
)
from trioqueue.layers import MetricsLayer


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    value: float | None = registry.get_sample_value(name, labels)
    return value


async def handler(x: int) -> None:
    return None


async def test_queue_depth_from_counts(autojump_clock: trio.abc.Clock) -> None:
    registry = CollectorRegistry()
    async with MemoryBackend.open(queue="a") as backend:
        await backend.push_bulk(range(3))
        await backend.push(9, delay=60)
        await WorkerBuilder("w").backend(backend).build(handler).run(burst=True)
        await backend.push(7)
        async with trio.open_nursery() as nursery:
            depth = await nursery.start(partial(collect_queue_depth, registry=registry), backend)
            assert isinstance(depth, QueueDepthCollector)
            name = "trioqueue_queue_depth"
            age = "trioqueue_queue_oldest_ready_seconds"
            # Finished tasks are no depth: only unfinished statuses are exported.
            assert sample(registry, name, queue="a", status="done") is None
            assert sample(registry, name, queue="a", status="killed") is None
            assert sample(registry, name, queue="a", status="pending") == 2.0
            assert sample(registry, name, queue="a", status="running") == 0.0
            assert sample(registry, age, queue="a") == 0.0  # 7 was pushed just now
            await trio.sleep(30)  # 7 waits; the delayed 9 is not due for 30 s more
            await trio.sleep(5.5 - 30 % 5)  # the next read after it
            assert sample(registry, age, queue="a") == pytest.approx(30 + 5.5 - 30 % 5, abs=0.6)
            await WorkerBuilder("w2").backend(backend).build(handler).run(burst=True)
            await trio.sleep(5.5)  # one interval later the collector has read again
            assert sample(registry, name, queue="a", status="pending") == 1.0
            assert sample(registry, age, queue="a") == 0.0  # the delayed 9 is not due yet
            nursery.cancel_scope.cancel()


async def test_the_gauge_goes_with_its_poller() -> None:
    # Like the global registry, this one refuses a second collector of the same name.
    registry = CollectorRegistry(auto_describe=True)
    async with MemoryBackend.open(queue="a") as backend:
        await backend.push(1)
        for _ in range(2):
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(collect_queue_depth, registry=registry), backend)
                assert sample(registry, "trioqueue_queue_depth", queue="a", status="pending") == 1
                nursery.cancel_scope.cancel()
            assert sample(registry, "trioqueue_queue_depth", queue="a", status="pending") is None


def test_serve_metrics_listens_on_loopback_by_default() -> None:
    server, thread = serve_metrics(0, CollectorRegistry())
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_serve_metrics_over_http() -> None:
    registry = CollectorRegistry()
    MetricsLayer(registry=registry)
    QueueDepthCollector(registry=registry)
    server, thread = serve_metrics(0, registry, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert "# TYPE trioqueue_attempts_total counter" in body
    assert "# TYPE trioqueue_attempt_duration_seconds histogram" in body
    assert "# TYPE trioqueue_queue_depth gauge" in body
