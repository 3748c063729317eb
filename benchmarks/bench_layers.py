"""What a production middleware stack costs: memory backend throughput, bare and layered.

Run as ``python -m benchmarks.bench_layers`` (or ``python benchmarks/bench_layers.py``);
prints one JSON line. The stack is Retry + Timeout + Log (logger at WARNING, so
the per-attempt records are filtered out as in production) + Metrics, with the
timeout given two ways: ``TimeoutLayer`` (a cancel scope of its own per attempt)
and ``WorkerBuilder.timeout`` (a deadline on the scope each task already runs
under). Each figure counts the push and the run of the tasks.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import trio

from trioqueue import MemoryBackend, WorkerBuilder
from trioqueue.layers import LogLayer, MetricsLayer, RetryLayer, TimeoutLayer


async def _noop(x: int) -> None:
    return None


async def _run(n: int, concurrency: int, layers: list[Any], deadline: float | None = None) -> float:
    """Push ``n`` no-op tasks, run them in burst mode; return tasks per second."""
    async with MemoryBackend.open(queue="bench") as backend:
        builder = WorkerBuilder("bench").backend(backend).concurrency(concurrency)
        builder.timeout(deadline)
        for layer in layers:
            builder.layer(layer)
        worker = builder.build(_noop)
        start = time.perf_counter()
        await backend.push_bulk(range(n))
        await worker.run(burst=True)
        elapsed = time.perf_counter() - start
        done = worker.statistics().done
    if done != n:
        raise RuntimeError(f"only {done} of {n} tasks ran")
    return n / elapsed


def _stack(*, timeout_layer: bool = True) -> list[Any]:
    from prometheus_client import CollectorRegistry

    logging.getLogger("trioqueue.task").setLevel(logging.WARNING)
    layers: list[Any] = [LogLayer(), MetricsLayer(registry=CollectorRegistry()), RetryLayer()]
    if timeout_layer:
        layers.append(TimeoutLayer(30))
    return layers


async def bench_stack(n: int = 100_000, concurrency: int = 100) -> dict[str, float]:
    """Measure end-to-end throughput bare and with the stack (best of interleaved runs).

    Args:
      n: Tasks per run.
      concurrency: The worker's concurrency.

    Returns:
      ``bare_tasks_per_s``, ``stack_tasks_per_s`` and ``stack_cost_pct`` (the
      share of the bare throughput the stack takes away), and the same with
      the deadline set by ``WorkerBuilder.timeout`` instead of ``TimeoutLayer``.
    """
    bare: list[float] = []
    stack: list[float] = []
    deadline: list[float] = []
    await _run(min(n, 5_000), concurrency, [])  # warm up
    for _ in range(3):
        bare.append(await _run(n, concurrency, []))
        stack.append(await _run(n, concurrency, _stack()))
        deadline.append(await _run(n, concurrency, _stack(timeout_layer=False), deadline=30))
    b, s, d = max(bare), max(stack), max(deadline)
    return {
        "bench": "layers.stack",
        "concurrency": concurrency,
        "bare_tasks_per_s": round(b, 1),
        "stack_tasks_per_s": round(s, 1),
        "stack_cost_pct": round(100.0 * (1.0 - s / b), 1),
        "stack_worker_timeout_tasks_per_s": round(d, 1),
        "stack_worker_timeout_cost_pct": round(100.0 * (1.0 - d / b), 1),
    }


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 100_000
    print(json.dumps(trio.run(bench_stack, n)))


if __name__ == "__main__":
    main(sys.argv)
