"""Benchmark the web board's pages on a store of a million tasks; one JSON line per figure.

Fills SQLite (a temporary file) and/or PostgreSQL (a fresh database) with
``--tasks`` tasks (90% done, 5% killed, 2% failed, 3% pending, a few
running, in 4 queues), then times each page through the ASGI app in process
(what a server adds is not counted): the task list unfiltered, filtered by
queue, by a common and a rare status, by a status no task has, a deep page
(keyset: ``before`` the middle id), a search by id, a task's page, and the
overview (counts and charts; not a target). Median and max of ``--rounds``.

Run: ``python benchmarks/bench_web.py [--tasks 1000000] [--backend sqlite|postgres|both]``.
The target: the task list answers in under 200 ms at 1,000,000 tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import trio

from trioqueue import Backend, Status
from trioqueue.drivers import StoredTask
from trioqueue.web import create_app

BATCH = 20_000


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _status(i: int) -> Status:
    r = i % 100
    if r < 90:
        return Status.DONE
    if r < 95:
        return Status.KILLED
    if r < 97:
        return Status.FAILED
    return Status.RUNNING if i % 10_000 == 99 else Status.PENDING


async def _fill(backend: Backend, n: int) -> None:
    now = backend.driver.now()
    payload = backend.codec.encode({"to": "someone@example.com", "n": 0})
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        batch = []
        for i in range(start, min(n, start + BATCH)):
            st = _status(i)
            final = st.is_final
            error = "RuntimeError: boom" if st in (Status.KILLED, Status.FAILED) else None
            batch.append(
                StoredTask(
                    id=f"b{i:09d}", queue=f"q{i % 4}", payload=payload, status=st,
                    attempts=0 if st is Status.PENDING else 1,
                    run_at=now - (n - i) * 0.05, created_at=now - (n - i) * 0.05,
                    finished_at=now - (n - i) * 0.05 if final else None,
                    last_error=error,
                    lease_token="bench" if st is Status.RUNNING else None,
                    lease_expires_at=now + 3600 if st is Status.RUNNING else None,
                )
            )  # fmt: skip
        await backend.driver.insert(batch)
    _emit(bench="web.fill", tasks=n, seconds=round(time.perf_counter() - t0, 1))


async def _time_pages(name: str, backend: Backend, n: int, rounds: int) -> None:
    mid = f"b{n // 2:09d}"
    pages = {
        "tasks": "/tasks",
        "tasks.queue": "/tasks?queue=q2",
        "tasks.status_common": "/tasks?status=done",
        "tasks.status_rare": "/tasks?status=killed&queue=q1",
        "tasks.status_none": "/tasks?status=cancelled",
        "tasks.deep_page": f"/tasks?before={mid}",
        "tasks.search_id": f"/tasks?id={mid}",
        "task": f"/task?id={mid}",
        "overview": "/",
    }
    app = create_app(backend)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        for label, path in pages.items():
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                r = await http.get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code in (200, 303), (path, r.status_code)
            _emit(
                bench=f"web.{name}.{label}", tasks=n, path=path,
                median_ms=round(statistics.median(times) * 1000, 1),
                max_ms=round(max(times) * 1000, 1),
            )  # fmt: skip


@asynccontextmanager
async def _sqlite() -> AsyncIterator[Backend]:
    from trioqueue.backends.sqlite import SqliteBackend

    with tempfile.TemporaryDirectory() as folder:
        async with SqliteBackend.open(f"sqlite:///{folder}/board.db") as backend:
            yield backend


@asynccontextmanager
async def _postgres() -> AsyncIterator[Backend]:
    import psycopg

    from trioqueue.backends.postgres import PostgresBackend

    server = os.environ.get("TRIOQUEUE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
    name = f"trioqueue_bench_web_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        async with PostgresBackend.open(f"{server}/{name}") as backend:
            yield backend
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = p.parse_args(argv)
    chosen: dict[str, Callable[[], AbstractAsyncContextManager[Backend]]] = {
        "sqlite": _sqlite, "postgres": _postgres,
    }  # fmt: skip
    for name, opener in chosen.items():
        if args.backend in (name, "both"):
            async with opener() as backend:
                await _fill(backend, args.tasks)
                await _time_pages(name, backend, args.tasks, args.rounds)


if __name__ == "__main__":
    trio.run(main, sys.argv[1:])
