"""Benchmark the PostgreSQL backend; prints one JSON line per measurement.

Usage: ``python benchmarks/bench_postgres.py [--server URL] [--tasks N] [--runner LIST]``
(``LIST`` defaults to ``native,asyncio,thread``).

Each run uses a fresh database (random name) on the server, dropped at the end.
Measures: one crossing from Trio into psycopg per statement runner, the two ways to insert
a batch (``unnest`` vs COPY into a temporary table), ``push_bulk`` rate, and the
end-to-end throughput of no-op tasks at concurrency 10 and 100.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import trio
import trio_asyncio
from psycopg import sql

from trioqueue import StoredTask, TaskId, WorkerBuilder
from trioqueue.backends._pg_pool import NativeRunner
from trioqueue.backends._pg_runner import AsyncioRunner, Runner, ThreadRunner
from trioqueue.backends._pg_statements import Statements
from trioqueue.backends.postgres import PostgresBackend, migrate


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


@contextmanager
def database(server: str) -> Iterator[str]:
    name = f"trioqueue_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def bench_crossing(url: str, n: int = 2000) -> None:
    async with trio_asyncio.open_loop() as loop:
        runners: dict[str, Runner] = {
            "native": NativeRunner(url, pool_size=1, statement_timeout=30, connect_timeout=10),
            "asyncio": AsyncioRunner(
                url, loop=loop, pool_size=1, statement_timeout=30, connect_timeout=10
            ),
            "thread": ThreadRunner(url, pool_size=1, statement_timeout=30, connect_timeout=10),
        }
        for name, b in runners.items():
            for _ in range(50):
                await b.fetch("SELECT 1", None)
            t0 = time.perf_counter()
            for _ in range(n):
                await b.fetch("SELECT 1", None)
            dt = time.perf_counter() - t0
            emit(bench="crossing", runner=name, us_per_statement=round(dt / n * 1e6, 1))
            await b.aclose()
    with psycopg.connect(url, autocommit=True) as c:
        t0 = time.perf_counter()
        for _ in range(n):
            c.execute("SELECT 1").fetchone()
        dt = time.perf_counter() - t0
    emit(bench="crossing", runner="none (sync, blocking)", us_per_statement=round(dt / n * 1e6, 1))


def _records(n: int, queue: str) -> list[StoredTask]:
    now = time.time()
    return [
        StoredTask(id=TaskId.new(), queue=queue, payload=b"null", run_at=now, created_at=now)
        for _ in range(n)
    ]


def bench_insert_forms(url: str, schema: str, n: int, batch: int = 1024) -> None:
    st = Statements(schema)
    tbl = sql.SQL("{}.tasks").format(sql.Identifier(schema))
    with psycopg.connect(url, autocommit=True) as c:
        recs = _records(n, "insert-unnest")
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            c.execute(st.insert, st.insert_params(recs[i : i + batch]))
        emit(
            bench="insert_form", form="unnest", tasks=n, per_s=round(n / (time.perf_counter() - t0))
        )
        recs = _records(n, "insert-copy")
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            with c.transaction():
                c.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS tq_in (id text, queue text, payload bytea,"
                    " max_attempts int, run_at float8, priority bigint, meta jsonb,"
                    " created_at float8) ON COMMIT DELETE ROWS"
                )
                with c.cursor().copy("COPY tq_in FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(
                        ["text", "text", "bytea", "int4", "float8", "int8", "jsonb", "float8"]
                    )
                    for r in recs[i : i + batch]:
                        cp.write_row(
                            (
                                r.id,
                                r.queue,
                                r.payload,
                                r.max_attempts,
                                r.run_at,
                                r.priority,
                                "{}",
                                r.created_at,
                            )
                        )
                c.execute(
                    sql.SQL(
                        "INSERT INTO {t} (id, queue, payload, max_attempts, run_at, priority,"
                        " meta, created_at) SELECT * FROM tq_in ON CONFLICT (id) DO NOTHING"
                    ).format(t=tbl)
                )
                c.execute("SELECT pg_notify(%s, %s)", (st.channel, "insert-copy"))
        emit(
            bench="insert_form",
            form="copy+temp",
            tasks=n,
            per_s=round(n / (time.perf_counter() - t0)),
        )


async def bench_backend(url: str, schema: str, runner: str, n: int) -> None:
    for concurrency in (10, 100):
        queue = f"bench-{runner}-{concurrency}"
        async with PostgresBackend.open(url, queue=queue, schema=schema, runner=runner) as b:
            t0 = time.perf_counter()
            await b.push_bulk([None] * n)
            push_dt = time.perf_counter() - t0
            if concurrency == 10:
                emit(bench="push_bulk", runner=runner, tasks=n, per_s=round(n / push_dt))

            async def noop(args: None) -> None:
                return None

            worker = WorkerBuilder("bench").backend(b).concurrency(concurrency).build(noop)
            t0 = time.perf_counter()
            await worker.run(burst=True)
            dt = time.perf_counter() - t0
            counts = await b.counts(queue=queue)
            done = sum(v for k, v in counts.get(queue, {}).items() if k.value == "done")
            emit(
                bench="end_to_end",
                runner=runner,
                concurrency=concurrency,
                tasks=n,
                done=done,
                seconds=round(dt, 2),
                per_s=round(n / dt),
            )


async def main(server: str, n: int, runners: list[str]) -> None:
    with database(server) as url:
        schema = "bench"
        await migrate(url, schema=schema)
        await bench_crossing(url)
        await trio.to_thread.run_sync(bench_insert_forms, url, schema, n)
        for runner in runners:
            await bench_backend(url, schema, runner, n)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--runner", default="native,asyncio,thread")
    a = p.parse_args()
    trio.run(main, a.server.rstrip("/"), a.tasks, a.runner.split(","))
