"""One figure of ``compare.py`` for pgqueuer, through its documented API and asyncpg.

Usage: ``python benchmarks/_compare_pgqueuer.py FIGURE --url URL --jobs N [...]``
with FIGURE one of ``single``, ``bulk``, ``e2e``, ``latency-worker``, ``latency-push``.

As in pgqueuer's README: ``AsyncpgDriver`` over one ``asyncpg.connect()``,
``Queries.install()`` for the schema, ``Queries.enqueue`` to push, a
``QueueManager`` entrypoint run with ``qm.run(batch_size=50)`` and stopped by
setting ``qm.shutdown``. Runs on uvloop when installed, as ``pgq run`` does.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from _compare_protocol import (
    NAME,
    WARMUP_JOBS,
    WARMUP_PUSHES,
    chunks,
    encode,
    latency_line,
    latency_lines,
    parse_args,
    payload,
    report,
    single_push_result,
)
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

try:
    import uvloop

    run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
except ImportError:  # pragma: no cover - uvloop comes with pgqueuer on Linux
    run = asyncio.run

BATCH_SIZE = 50


async def open_queries(url: str, *, install: bool) -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(conn))
    if install and not await queries.schema_is_installed():
        await queries.install()
    return conn, queries


async def single(url: str, n: int) -> None:
    conn, q = await open_queries(url, install=True)
    for i in range(WARMUP_PUSHES):
        await q.enqueue(NAME, encode(payload(-1 - i)))
    calls = []
    t0 = time.perf_counter()
    for i in range(n):
        s = time.perf_counter()
        await q.enqueue(NAME, encode(payload(i)))
        calls.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    await conn.close()
    single_push_result(n, total, calls)


async def push_chunks(q: Queries, n: int) -> float:
    batches = chunks(n)
    t0 = time.perf_counter()
    for batch in batches:
        k = len(batch)
        await q.enqueue([NAME] * k, [encode(p) for p in batch], [0] * k)
    return time.perf_counter() - t0


async def bulk(url: str, n: int) -> None:
    conn, q = await open_queries(url, install=True)
    total = await push_chunks(q, n)
    await conn.close()
    report(jobs=n, per_s=n / total)


def counting_manager(
    conn: asyncpg.Connection, concurrency_limit: int, n: int, record: Any = None
) -> QueueManager:
    """A QueueManager whose entrypoint counts its jobs and shuts down at the ``n``-th."""
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    done = 0

    @qm.entrypoint(NAME, concurrency_limit=concurrency_limit)
    async def handler(job: Job) -> None:
        nonlocal done
        if record is not None:
            record(job, time.time())
        done += 1
        if done == n:
            qm.shutdown.set()

    return qm


async def e2e(url: str, n: int, concurrency: int, *, worker_cap: bool) -> None:
    """Run ``n`` stored jobs, ``concurrency`` at a time, and time the worker.

    ``concurrency`` is the entrypoint's ``concurrency_limit`` (``batch_size=50``);
    with ``worker_cap`` it is the worker's ``max_concurrent_tasks`` instead, with no
    entrypoint limit and the largest batch that cap allows (half of it, at most 50).
    """
    conn, q = await open_queries(url, install=True)
    await push_chunks(q, n)
    await conn.close()
    conn = await asyncpg.connect(url)
    if worker_cap:
        qm = counting_manager(conn, 0, n)
        run_manager = qm.run(
            batch_size=min(BATCH_SIZE, concurrency // 2), max_concurrent_tasks=concurrency
        )
    else:
        qm = counting_manager(conn, concurrency, n)
        run_manager = qm.run(batch_size=BATCH_SIZE)
    t0 = time.perf_counter()
    await run_manager
    total = time.perf_counter() - t0
    await conn.close()
    conn, q = await open_queries(url, install=False)
    left = sum(s.count for s in await q.queue_size())
    await conn.close()
    report(jobs=n, concurrency=concurrency, seconds=total, per_s=n / total, left=left)


async def latency_worker(url: str, n: int, out: Any) -> None:
    def record(job: Job, t_start: float) -> None:
        args = json.loads(job.payload or b"{}")
        out.write(latency_line(args["n"], args["t"], t_start))
        out.flush()

    conn, _ = await open_queries(url, install=True)
    qm = counting_manager(conn, 10, n + WARMUP_JOBS, record)
    print("ready", flush=True)
    await qm.run(batch_size=BATCH_SIZE)
    await conn.close()


async def latency_push(url: str, n: int, pause: float, out_path: str) -> None:
    conn, q = await open_queries(url, install=False)
    for w in range(WARMUP_JOBS):
        await q.enqueue(NAME, encode({**payload(-1 - w), "t": time.time()}))
        async with asyncio.timeout(30):
            while latency_lines(out_path) <= w:  # noqa: ASYNC110 - the worker is another process
                await asyncio.sleep(0.005)
    await asyncio.sleep(0.5)
    calls = []
    for i in range(n):
        args = payload(i)
        s = time.perf_counter()
        args["t"] = time.time()
        await q.enqueue(NAME, encode(args))
        calls.append(time.perf_counter() - s)
        await asyncio.sleep(pause)
    await conn.close()
    report(jobs=n, push_p50_ms=statistics.median(calls) * 1e3)


def main() -> None:
    a = parse_args(["single", "bulk", "e2e", "e2e-cap", "latency-worker", "latency-push"])
    if a.figure == "single":
        run(single(a.url, a.jobs))
    elif a.figure == "bulk":
        run(bulk(a.url, a.jobs))
    elif a.figure in ("e2e", "e2e-cap"):
        run(e2e(a.url, a.jobs, a.concurrency, worker_cap=a.figure == "e2e-cap"))
    elif a.figure == "latency-worker":
        with open(a.out, "a") as out:
            run(latency_worker(a.url, a.jobs, out))
    else:
        run(latency_push(a.url, a.jobs, a.pause, a.out))


if __name__ == "__main__":
    sys.exit(main())
