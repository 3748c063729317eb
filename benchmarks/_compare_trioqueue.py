"""One figure of ``compare.py`` for trioqueue, through its public API only.

Usage: ``python benchmarks/_compare_trioqueue.py FIGURE --url URL --jobs N [...]``
with FIGURE one of ``single``, ``bulk``, ``e2e``, ``latency-worker``,
``latency-push``; URL a ``postgresql://`` or ``sqlite:///`` URL (backend defaults),
or ``memory://`` for ``e2e`` (int payloads, as the bare loop it is held against).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import trio
from _compare_protocol import (
    NAME,
    WARMUP_JOBS,
    WARMUP_PUSHES,
    chunks,
    latency_line,
    latency_lines,
    parse_args,
    payload,
    report,
    single_push_result,
)

from trioqueue import Worker, WorkerBuilder, open_backend


async def single(url: str, n: int) -> None:
    async with open_backend(url, queue=NAME) as b:
        for i in range(WARMUP_PUSHES):
            await b.push(payload(-1 - i))
        calls = []
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            await b.push(payload(i))
            calls.append(time.perf_counter() - s)
        total = time.perf_counter() - t0
    single_push_result(n, total, calls)


async def bulk(url: str, n: int) -> None:
    batches = chunks(n)
    async with open_backend(url, queue=NAME) as b:
        t0 = time.perf_counter()
        for batch in batches:
            await b.push_bulk(batch)
        total = time.perf_counter() - t0
    report(jobs=n, per_s=n / total)


def counting_worker(b: Any, concurrency: int, n: int, record: Any = None) -> Worker:
    """A worker whose handler counts its jobs and stops the worker at the ``n``-th."""
    done = 0
    worker: Worker | None = None

    async def handler(args: dict[str, Any]) -> None:
        nonlocal done
        if record is not None:
            record(args, time.time())
        done += 1
        if done == n and worker is not None:
            worker.stop()

    worker = WorkerBuilder(NAME).backend(b).concurrency(concurrency).build(handler)
    return worker


def int_worker(b: Any, concurrency: int, n: int) -> Worker:
    """A worker whose handler takes an int and stops the worker at the ``n``-th task."""
    done = 0
    worker: Worker | None = None

    async def handler(args: int) -> None:
        nonlocal done
        done += 1
        if done == n and worker is not None:
            worker.stop()

    worker = WorkerBuilder(NAME).backend(b).concurrency(concurrency).build(handler)
    return worker


async def e2e(url: str, n: int, concurrency: int) -> None:
    async with open_backend(url, queue=NAME) as b:
        if url.startswith("memory://"):
            # As the bare loop it is held against: ints, a handler that does nothing.
            await b.push_bulk(range(n))
            worker = int_worker(b, concurrency, n)
        else:
            for batch in chunks(n):
                await b.push_bulk(batch)
            worker = counting_worker(b, concurrency, n)
        t0 = time.perf_counter()
        await worker.run()
        total = time.perf_counter() - t0
        counts = await b.counts(queue=NAME)
    done = sum(v for k, v in counts.get(NAME, {}).items() if k.value == "done")
    report(jobs=n, concurrency=concurrency, seconds=total, per_s=n / total, left=n - done)


async def latency_worker(url: str, n: int, out: Any) -> None:
    def record(args: dict[str, Any], t_start: float) -> None:
        out.write(latency_line(args["n"], args["t"], t_start))
        out.flush()

    async with open_backend(url, queue=NAME) as b:
        worker = counting_worker(b, 10, n + WARMUP_JOBS, record)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            print("ready", flush=True)


async def latency_push(url: str, n: int, pause: float, out_path: str) -> None:
    async with open_backend(url, queue=NAME) as b:
        for w in range(WARMUP_JOBS):
            await b.push({**payload(-1 - w), "t": time.time()})
            with trio.fail_after(30):
                while latency_lines(out_path) <= w:  # noqa: ASYNC110 - the worker is another process
                    await trio.sleep(0.005)
        await trio.sleep(0.5)
        calls = []
        for i in range(n):
            args = payload(i)
            s = time.perf_counter()
            args["t"] = time.time()
            await b.push(args)
            calls.append(time.perf_counter() - s)
            await trio.sleep(pause)
    report(jobs=n, push_p50_ms=statistics.median(calls) * 1e3)


def main() -> None:
    a = parse_args(["single", "bulk", "e2e", "latency-worker", "latency-push"])
    if a.figure == "single":
        trio.run(single, a.url, a.jobs)
    elif a.figure == "bulk":
        trio.run(bulk, a.url, a.jobs)
    elif a.figure == "e2e":
        trio.run(e2e, a.url, a.jobs, a.concurrency)
    elif a.figure == "latency-worker":
        with open(a.out, "a") as out:
            trio.run(latency_worker, a.url, a.jobs, out)
    else:
        trio.run(latency_push, a.url, a.jobs, a.pause, a.out)


if __name__ == "__main__":
    sys.exit(main())
