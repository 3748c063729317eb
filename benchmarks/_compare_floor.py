"""The raw-SQL floor of ``compare.py``: what the drivers alone do on this machine.

Usage: ``python benchmarks/_compare_floor.py FIGURE --url URL --jobs N [--batch K]``
with FIGURE one of ``single``, ``bulk``, ``claim``; URL ``postgresql://...`` (blocking
psycopg, one autocommit connection) or ``sqlite:////abs/path.db`` (sqlite3, WAL,
``synchronous=NORMAL``). A plain table of (id, status, payload); no queue library.

- single: one INSERT and its COMMIT per job, sequentially.
- bulk: ``CHUNK`` rows per transaction; COPY on PostgreSQL, ``executemany`` on SQLite.
- claim: jobs already stored; claim ``K`` (mark running, return them), then mark
  those done, until none is left: two statements, two commits per batch.
- bare (``--url memory://``): no storage at all; a bounded trio channel into
  ``--concurrency`` consumer tasks, the ceiling of the memory backend.
- schema-bulk, schema-claim (SQLite): ``bulk`` and ``claim`` on trioqueue's own
  table (made by its migrations, with its indexes and trigger), through sqlite3
  alone: the driver's insert and claim statements, and a set-based "done"
  update per batch. What the database does with the table trioqueue needs,
  next to what it does with the plain table above.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from typing import Any

import psycopg
from _compare_protocol import (
    NAME,
    WARMUP_PUSHES,
    chunks,
    encode,
    parse_args,
    payload,
    report,
    single_push_result,
)

PG_DDL = """
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'pending',
    payload bytea NOT NULL
);
CREATE INDEX jobs_pending ON jobs (id) WHERE status = 'pending'
"""
PG_CLAIM = """
UPDATE jobs SET status = 'running'
FROM (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) c
WHERE jobs.id = c.id
RETURNING jobs.id, jobs.payload
"""
PG_DONE = "UPDATE jobs SET status = 'done' WHERE id = ANY(%s)"

SQLITE_DDL = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'pending',
    payload BLOB NOT NULL
);
CREATE INDEX jobs_pending ON jobs (id) WHERE status = 'pending';
"""
SQLITE_CLAIM = """
UPDATE jobs SET status = 'running'
WHERE id IN (SELECT id FROM jobs WHERE status = 'pending' ORDER BY id LIMIT ?)
RETURNING id, payload
"""


def pg_copy(conn: psycopg.Connection[Any], batch: list[dict[str, Any]]) -> None:
    with conn.transaction(), conn.cursor().copy("COPY jobs (payload) FROM STDIN") as cp:
        for p in batch:
            cp.write_row((encode(p),))


def pg(figure: str, url: str, n: int, k: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PG_DDL)
        if figure == "single":
            insert = "INSERT INTO jobs (payload) VALUES (%s)"
            for i in range(WARMUP_PUSHES):
                conn.execute(insert, (encode(payload(-1 - i)),))
            calls = []
            t0 = time.perf_counter()
            for i in range(n):
                s = time.perf_counter()
                conn.execute(insert, (encode(payload(i)),))
                calls.append(time.perf_counter() - s)
            single_push_result(n, time.perf_counter() - t0, calls)
            return
        batches = chunks(n)
        if figure == "bulk":
            t0 = time.perf_counter()
            for batch in batches:
                pg_copy(conn, batch)
            report(jobs=n, per_s=n / (time.perf_counter() - t0))
            return
        for batch in batches:
            pg_copy(conn, batch)
        done = 0
        t0 = time.perf_counter()
        while rows := conn.execute(PG_CLAIM, (k,)).fetchall():
            conn.execute(PG_DONE, ([r[0] for r in rows],))
            done += len(rows)
        total = time.perf_counter() - t0
        report(jobs=n, batch=k, seconds=total, per_s=done / total, left=n - done)


def sqlite(figure: str, path: str, n: int, k: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: one statement, one commit
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SQLITE_DDL)
        insert = "INSERT INTO jobs (payload) VALUES (?)"
        if figure == "single":
            for i in range(WARMUP_PUSHES):
                conn.execute(insert, (encode(payload(-1 - i)),))
            calls = []
            t0 = time.perf_counter()
            for i in range(n):
                s = time.perf_counter()
                conn.execute(insert, (encode(payload(i)),))
                calls.append(time.perf_counter() - s)
            single_push_result(n, time.perf_counter() - t0, calls)
            return
        t0 = time.perf_counter()
        for batch in chunks(n):
            conn.execute("BEGIN")
            conn.executemany(insert, [(encode(p),) for p in batch])
            conn.execute("COMMIT")
        if figure == "bulk":
            report(jobs=n, per_s=n / (time.perf_counter() - t0))
            return
        done = 0
        t0 = time.perf_counter()
        while rows := conn.execute(SQLITE_CLAIM, (k,)).fetchall():
            ids = [r[0] for r in rows]
            marks = ",".join("?" * len(ids))
            conn.execute(f"UPDATE jobs SET status = 'done' WHERE id IN ({marks})", ids)
            done += len(rows)
        total = time.perf_counter() - t0
        report(jobs=n, batch=k, seconds=total, per_s=done / total, left=n - done)
    finally:
        conn.close()


SCHEMA_DONE = """
UPDATE trioqueue_tasks SET status = 'done', finished_at = ?, lease_token = NULL,
    lease_expires_at = NULL
WHERE id IN (SELECT value FROM json_each(?))
"""


def sqlite_schema(figure: str, path: str, n: int, k: int) -> None:
    """``bulk`` and ``claim`` on trioqueue's own table, without trioqueue's Python."""
    from trioqueue.backends._sqlite_schema import MIGRATIONS
    from trioqueue.backends._sqlite_statements import CLAIM, INSERT_FRESH

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for script in MIGRATIONS:
            conn.executescript(script)
        now = time.time()
        t0 = time.perf_counter()
        for c, batch in enumerate(chunks(n)):
            rows = [
                (f"{c:08d}{i:018d}", NAME, encode(p), 25, now, 0, "{}", now)
                for i, p in enumerate(batch)
            ]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_FRESH, rows)
            conn.execute("COMMIT")
        if figure == "schema-bulk":
            report(jobs=n, per_s=n / (time.perf_counter() - t0))
            return
        done = 0
        t0 = time.perf_counter()
        while True:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(CLAIM, ("token", now + 60, "floor", NAME, now, k)).fetchall()
            conn.execute("COMMIT")
            if not rows:
                break
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(SCHEMA_DONE, (now, json.dumps([r[0] for r in rows])))
            conn.execute("COMMIT")
            done += len(rows)
        total = time.perf_counter() - t0
        report(jobs=n, batch=k, seconds=total, per_s=done / total, left=n - done)
    finally:
        conn.close()


def bare(n: int, concurrency: int) -> None:
    """The memory backend's ceiling: items through a bounded channel into consumer tasks."""
    import trio
    from bench_memory import bare_loop

    per_s = trio.run(bare_loop, concurrency, n)
    report(jobs=n, concurrency=concurrency, seconds=n / per_s, per_s=per_s)


def main() -> None:
    a = parse_args(["single", "bulk", "claim", "bare", "schema-bulk", "schema-claim"])
    if a.figure == "bare":
        bare(a.jobs, a.concurrency)
    elif a.figure.startswith("schema-"):
        sqlite_schema(a.figure, a.url.removeprefix("sqlite:///"), a.jobs, a.batch)
    elif a.url.startswith("sqlite:///"):
        sqlite(a.figure, a.url.removeprefix("sqlite:///"), a.jobs, a.batch)
    else:
        pg(a.figure, a.url, a.jobs, a.batch)


if __name__ == "__main__":
    sys.exit(main())
