"""Benchmark the SQLite backend on a temporary file; prints one JSON line per figure.

- ``push_bulk``: tasks stored per second by ``push_bulk``.
- ``end_to_end``: tasks per second from pushed to DONE, no-op handler, at a
  concurrency of 10 and of 100 (one worker).
- ``wake_latency``: seconds from a push in another process to the claim by an
  idle worker here (median, 95th percentile, max).

Run: ``python benchmarks/bench_sqlite.py [--tasks 20000] [--wake-samples 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import trio

from trioqueue import Status, WorkerBuilder
from trioqueue.backends.sqlite import SqliteBackend


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def _push_bulk(path: str, n: int) -> None:
    async with SqliteBackend.open(path) as backend:
        t0 = time.perf_counter()
        await backend.push_bulk(range(n))
        dt = time.perf_counter() - t0
    _emit(bench="sqlite.push_bulk", tasks=n, seconds=round(dt, 3), tasks_per_s=round(n / dt))


async def _end_to_end(path: str, n: int, concurrency: int) -> None:
    async def noop(x: int) -> None:
        return None

    async with SqliteBackend.open(path) as backend:
        await backend.push_bulk(range(n))
        worker = WorkerBuilder("bench").backend(backend).concurrency(concurrency).build(noop)
        t0 = time.perf_counter()
        await worker.run(burst=True)
        dt = time.perf_counter() - t0
        done = (await backend.counts())["default"]
    if done.get(Status.DONE) != n:
        raise RuntimeError(f"expected {n} tasks done, got {done}")
    _emit(
        bench="sqlite.end_to_end",
        tasks=n,
        concurrency=concurrency,
        seconds=round(dt, 3),
        tasks_per_s=round(n / dt),
    )


_PUSHER = """
import random, sys, time, trio
from trioqueue.backends.sqlite import SqliteBackend

async def main(path, n):
    async with SqliteBackend.open(path, queue="wake") as backend:
        for _ in range(n):
            await trio.sleep(random.uniform(0.1, 0.4))
            await backend.push(time.time())

trio.run(main, sys.argv[1], int(sys.argv[2]))
"""


async def _wake_latency(path: str, samples: int) -> None:
    latencies: list[float] = []

    async with SqliteBackend.open(path, queue="wake") as backend:

        async def record(pushed_at: float) -> None:
            latencies.append(time.time() - pushed_at)
            if len(latencies) >= samples:
                worker.stop()

        worker = WorkerBuilder("wake").backend(backend).concurrency(1).build(record)
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(worker.serve)  # returns once ``samples`` tasks ran
                await trio.run_process([sys.executable, "-c", _PUSHER, path, str(samples)])
    latencies.sort()
    _emit(
        bench="sqlite.wake_latency",
        samples=len(latencies),
        median_ms=round(statistics.median(latencies) * 1000, 1),
        p95_ms=round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
        max_ms=round(latencies[-1] * 1000, 1),
    )


async def _main(n: int, wake_samples: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        await _push_bulk(os.path.join(d, "push.db"), n)
        for concurrency in (10, 100):
            await _end_to_end(os.path.join(d, f"e2e{concurrency}.db"), n, concurrency)
        if wake_samples:
            await _wake_latency(os.path.join(d, "wake.db"), wake_samples)


def main() -> None:
    """Parse the command line and run the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--wake-samples", type=int, default=30)
    args = parser.parse_args()
    trio.run(_main, args.tasks, args.wake_samples)


if __name__ == "__main__":
    main()
