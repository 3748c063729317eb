"""MetricsLayer: sample values in a fresh registry."""

from __future__ import annotations

import sys

import pytest
import trio
from prometheus_client import CollectorRegistry

from trioqueue import Abort, Attempt, MemoryBackend, ServiceBuilder, Status, Task, WorkerBuilder
from trioqueue.layers import MetricsLayer, RetryLayer


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    value: float | None = registry.get_sample_value(name, labels)
    return value


async def test_counts_outcomes_and_durations_per_queue(autojump_clock: trio.abc.Clock) -> None:
    registry = CollectorRegistry()

    async def handler(x: int, attempt: Attempt) -> int:
        await trio.sleep(0.5 if x else 2.0)
        if x == 1 and attempt == 1:
            raise ValueError("once")
        if x == 2:
            raise Abort("never")
        return x

    async with MemoryBackend.open(queue="q") as backend:
        await backend.push_bulk([0, 1, 2])
        builder = WorkerBuilder("w").backend(backend).layer(MetricsLayer(registry=registry))
        builder.layer(RetryLayer(lambda a: 0.0))
        await builder.build(handler).run(burst=True)
        counts = await backend.counts()
    assert counts["q"] == {Status.DONE: 2, Status.KILLED: 1}
    total = "trioqueue_attempts_total"
    assert sample(registry, total, queue="q", outcome="done") == 2.0
    assert sample(registry, total, queue="q", outcome="retry") == 1.0
    assert sample(registry, total, queue="q", outcome="killed") == 1.0
    assert sample(registry, total, queue="q", outcome="failed") == 0.0
    hist = "trioqueue_attempt_duration_seconds"
    assert sample(registry, f"{hist}_count", queue="q") == 4.0
    assert sample(registry, f"{hist}_sum", queue="q") == pytest.approx(2.0 + 3 * 0.5)
    assert sample(registry, f"{hist}_bucket", queue="q", le="0.5") == 3.0
    assert sample(registry, "trioqueue_tasks_in_progress", queue="q") == 0.0


async def test_in_progress_gauge_while_running() -> None:
    registry = CollectorRegistry()
    inside = trio.Event()
    release = trio.Event()

    async def handler(x: int) -> None:
        inside.set()
        await release.wait()

    svc = ServiceBuilder().layer(MetricsLayer(registry=registry)).service(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(svc, Task(1, queue="a", attempts=1))
        await inside.wait()
        assert sample(registry, "trioqueue_tasks_in_progress", queue="a") == 1.0
        release.set()
    assert sample(registry, "trioqueue_tasks_in_progress", queue="a") == 0.0
    assert sample(registry, "trioqueue_attempts_total", queue="a", outcome="done") == 1.0


async def test_layers_on_one_registry_share_the_metrics() -> None:
    registry = CollectorRegistry()

    async def handler(x: int) -> int:
        return x

    for _ in range(2):
        svc = ServiceBuilder().layer(MetricsLayer(registry=registry)).service(handler)
        await svc(Task(1, queue="a", attempts=1))
    assert sample(registry, "trioqueue_attempts_total", queue="a", outcome="done") == 2.0


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install trioqueue\[metrics\]"):
        MetricsLayer()
