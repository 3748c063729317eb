"""Benchmark depth reads (``backend.counts()``) over a store full of finished tasks.

Builds ``--finished`` final tasks (DONE, with a few KILLED and CANCELLED, over
three queues) plus ``--waiting`` PENDING ones in a SQLite file and in a fresh
PostgreSQL database, then times ``counts()`` (every queue, and one queue).
Prints one JSON line per figure: the median and the maximum of ``--reads``
calls, in milliseconds.

Run: ``python benchmarks/bench_counts.py [--finished 1000000] [--backend sqlite,postgres]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import trio

from trioqueue import Outcome, Status, StoredTask
from trioqueue.backends.postgres import PostgresBackend
from trioqueue.backends.sqlite import SqliteBackend

_QUEUES = ("default", "mail", "reports")
# Each finished task's queue and final status by its number (1 in 50 KILLED, 1 in 100 CANCELLED).
_STATUS_SQL = (
    "CASE WHEN {i} % 50 = 0 THEN 'killed' WHEN {i} % 100 = 1 THEN 'cancelled' ELSE 'done' END"
)
_QUEUE_SQL = "CASE {i} % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'mail' ELSE 'reports' END"


#: Rows made final per statement when filling PostgreSQL.
_PG_BATCH = 1000


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _sqlite_fill(path: str, finished: int, waiting: int) -> None:
    import sqlite3

    # Stored RUNNING, then made final by one statement (the finished counters'
    # update trigger counts them; trioqueue's own inserts of final tasks
    # count them in Python, so a bare INSERT here would not be counted).
    i = "x.i"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        f"""
        WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM x WHERE i < ?)
        INSERT INTO trioqueue_tasks (id, queue, payload, status, run_at, created_at, attempts)
        SELECT printf('f%09d', i), {_QUEUE_SQL.format(i=i)}, x'80', 'running', 1.0, 1.0, 1
        FROM x
        """,
        (finished,),
    )
    conn.execute(
        f"""
        UPDATE trioqueue_tasks
        SET status = {_STATUS_SQL.format(i="CAST(substr(id, 2) AS INTEGER)")},
            finished_at = 1.0 + CAST(substr(id, 2) AS INTEGER)
        WHERE status = 'running'
        """
    )
    conn.execute(
        f"""
        WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM x WHERE i < ?)
        INSERT INTO trioqueue_tasks (id, queue, payload, status, run_at, created_at)
        SELECT printf('p%09d', i), {_QUEUE_SQL.format(i=i)}, x'80', 'pending', 1.0, 1.0 FROM x
        """,
        (waiting,),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


async def _pg_fill(backend: Any, finished: int, waiting: int) -> None:
    # Through the driver, as workers do it: stored, claimed and settled in
    # batches of ``_PG_BATCH`` (a settle writes one ledger row per batch and
    # queue for its DONE tasks; KILLED and CANCELLED ones one each).
    d = backend.driver
    for lo in range(1, finished + 1, _PG_BATCH):
        await d.insert(
            [
                StoredTask(
                    id=f"f{i:09d}", queue=_QUEUES[i % 3], payload=b"0", run_at=1.0,
                    created_at=1.0, max_attempts=1,
                )
                for i in range(lo, min(finished + 1, lo + _PG_BATCH))
            ]
        )  # fmt: skip
    for queue in _QUEUES:
        while held := await d.claim(queue, _PG_BATCH, "fill", 3600.0):
            outcomes = []
            for t in held:
                i = int(t.id[1:])
                if i % 50 == 0:  # its only attempt failed: KILLED
                    outcomes.append(Outcome(t.id, Status.FAILED, error="x"))
                elif i % 100 == 1:
                    outcomes.append(Outcome(t.id, Status.CANCELLED, error="x"))
                else:
                    outcomes.append(Outcome(t.id, Status.DONE))
            await d.settle(outcomes, "fill")
    await d.insert(
        [
            StoredTask(
                id=f"p{i:09d}", queue=_QUEUES[i % 3], payload=b"0", run_at=1.0, created_at=1.0
            )
            for i in range(waiting)
        ]
    )


def _pg_vacuum(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE trioqueue.tasks")
        conn.execute("VACUUM ANALYZE trioqueue.finished_counts")


async def _time_counts(
    backend: Any, name: str, finished: int, reads: int, vacuum: str | None = None
) -> None:
    expected_done = finished - finished // 50 - (finished + 98) // 100
    for queue in (None, "mail"):
        t0 = time.perf_counter()
        await backend.counts(queue=queue)  # warm up (and a compaction, if one is due)
        first = (time.perf_counter() - t0) * 1000
        if vacuum is not None and queue is None:
            # The ledger rows the first read folded are dead until a vacuum
            # (autovacuum's, on a running server).
            await trio.to_thread.run_sync(_pg_vacuum, vacuum)
        times = []
        for _ in range(reads):
            t0 = time.perf_counter()
            counts = await backend.counts(queue=queue)
            times.append((time.perf_counter() - t0) * 1000)
        if queue is None:
            done = sum(per.get(Status.DONE, 0) for per in counts.values())
            if done != expected_done:
                raise RuntimeError(f"expected {expected_done} DONE, got {counts}")
        _emit(
            bench=f"{name}.counts",
            queue=queue,
            finished=finished,
            first_ms=round(first, 2),
            median_ms=round(statistics.median(times), 2),
            max_ms=round(max(times), 2),
        )


async def _sqlite(finished: int, waiting: int, reads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "counts.db")
        async with SqliteBackend.open(path):
            pass  # creates the schema
        t0 = time.perf_counter()
        _sqlite_fill(path, finished, waiting)
        _emit(bench="sqlite.fill", tasks=finished + waiting, s=round(time.perf_counter() - t0))
        async with SqliteBackend.open(path) as backend:
            await _time_counts(backend, "sqlite", finished, reads)


async def _postgres(server: str, finished: int, waiting: int, reads: int) -> None:
    from bench_postgres import database

    with database(server) as url:
        async with PostgresBackend.open(url):
            pass  # creates the schema
        t0 = time.perf_counter()
        async with PostgresBackend.open(url) as backend:
            await _pg_fill(backend, finished, waiting)
        await trio.to_thread.run_sync(_pg_vacuum, url)  # as autovacuum would after it
        _emit(bench="postgres.fill", tasks=finished + waiting, s=round(time.perf_counter() - t0))
        async with PostgresBackend.open(url) as backend:
            await _time_counts(backend, "postgres", finished, reads, vacuum=url)


async def main(args: argparse.Namespace) -> None:
    for name in args.backend.split(","):
        if name == "sqlite":
            await _sqlite(args.finished, args.waiting, args.reads)
        elif name == "postgres":
            await _postgres(args.server, args.finished, args.waiting, args.reads)
        else:
            raise SystemExit(f"unknown backend {name!r}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--finished", type=int, default=1_000_000)
    p.add_argument("--waiting", type=int, default=1_000)
    p.add_argument("--reads", type=int, default=20)
    p.add_argument("--backend", default="sqlite,postgres")
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    trio.run(main, p.parse_args())
