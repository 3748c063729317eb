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

from trioqueue import Status
from trioqueue.backends.postgres import PostgresBackend
from trioqueue.backends.sqlite import SqliteBackend

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

    i = "x.i"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        f"""
        WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM x WHERE i < ?)
        INSERT INTO trioqueue_tasks (id, queue, payload, status, run_at, created_at,
                                     finished_at, attempts)
        SELECT printf('f%09d', i), {_QUEUE_SQL.format(i=i)}, x'80',
               {_STATUS_SQL.format(i=i)}, 1.0, 1.0, 1.0 + i, 1
        FROM x
        """,
        (finished,),
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


def _pg_fill(url: str, finished: int, waiting: int) -> None:
    import psycopg

    # The finished tasks are stored RUNNING, then made final by statements of
    # ``_PG_BATCH`` rows, as settles make them (the ledger of finished counts
    # gets one row per statement, queue and status, as it does from settles).
    # psycopg takes ``%`` for a placeholder: the modulo is ``%%`` here.
    queue = _QUEUE_SQL.format(i="g").replace("%", "%%")
    status = _STATUS_SQL.format(i="substr(id, 2)::int").replace("%", "%%")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"""INSERT INTO trioqueue.tasks (id, queue, payload, status, run_at, created_at,
                                             attempts)
            SELECT 'f' || lpad(g::text, 9, '0'), {queue}, '\\x80', 'running', 1.0, 1.0, 1
            FROM generate_series(1, %s) AS g""",
            (finished,),
        )
        for lo in range(1, finished + 1, _PG_BATCH):
            conn.execute(
                f"""UPDATE trioqueue.tasks SET status = {status},
                    finished_at = 1.0 + substr(id, 2)::int
                WHERE id >= %s AND id < %s""",
                (f"f{lo:09d}", f"f{lo + _PG_BATCH:09d}"),
            )
        conn.execute(
            f"""INSERT INTO trioqueue.tasks (id, queue, payload, status, run_at, created_at)
            SELECT 'p' || lpad(g::text, 9, '0'), {queue}, '\\x80',
                   'pending', 1.0, 1.0
            FROM generate_series(1, %s) AS g""",
            (waiting,),
        )
        conn.execute("VACUUM ANALYZE trioqueue.tasks")


async def _time_counts(backend: Any, name: str, finished: int, reads: int) -> None:
    expected_done = finished - finished // 50 - (finished + 98) // 100
    for queue in (None, "mail"):
        t0 = time.perf_counter()
        await backend.counts(queue=queue)  # warm up (and a compaction, if one is due)
        first = (time.perf_counter() - t0) * 1000
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
        await trio.to_thread.run_sync(_pg_fill, url, finished, waiting)
        _emit(bench="postgres.fill", tasks=finished + waiting, s=round(time.perf_counter() - t0))
        async with PostgresBackend.open(url) as backend:
            await _time_counts(backend, "postgres", finished, reads)


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
