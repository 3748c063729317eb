"""Depth reads (``counts``) cost the same with many finished tasks as with few.

SQLite: the virtual-machine steps of the counts statement; PostgreSQL: the
buffers its plan touches. Both are counted, never timed, with a few
finished tasks and with many; and the migrations seed the counters of
finished tasks from a store that has them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_support import pg_url, random_name
from psycopg import sql as pgsql

from trioqueue import Outcome, Status, StoredTask
from trioqueue.backends import _sqlite_schema as schema
from trioqueue.backends import _sqlite_statements as sql
from trioqueue.backends.postgres import PostgresBackend
from trioqueue.backends.sqlite import SqliteBackend, SqliteDriver

__all__ = ["pg_url"]

T0 = 1_700_000_000.0
FEW, MANY, WAITING = 50, 5_000, 40


def _task(i: int, status: Status, queue: str = "q") -> StoredTask:
    final = status.is_final
    return StoredTask(
        id=f"{status.value}-{i:06d}",
        queue=queue,
        payload=b'"x"',
        run_at=T0,
        created_at=T0,
        status=status,
        finished_at=T0 + i if final else None,
    )


def _sqlite_steps(path: str) -> int:
    """Virtual-machine steps of one read of ``COUNTS`` (every queue)."""
    conn = sqlite3.connect(path)
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0

    try:
        conn.set_progress_handler(step, 1)
        conn.execute(sql.COUNTS, {"queue": None}).fetchall()
    finally:
        conn.close()
    return steps[0]


async def _sqlite_store(path: str, finished: int) -> None:
    async with SqliteBackend.open(path) as backend:
        tasks = [_task(i, Status.PENDING) for i in range(WAITING)]
        tasks += [_task(i, Status.DONE, queue=f"q{i % 3}") for i in range(finished)]
        await backend.driver.insert(tasks)
        counts = await backend.counts()
    assert sum(per.get(Status.DONE, 0) for per in counts.values()) == finished
    assert counts["q"][Status.PENDING] == WAITING


async def test_sqlite_counts_read_no_finished_task(tmp_path: Path) -> None:
    few, many = str(tmp_path / "few.db"), str(tmp_path / "many.db")
    await _sqlite_store(few, FEW)
    await _sqlite_store(many, MANY)
    # A walk over the finished tasks would take thousands of steps more.
    assert _sqlite_steps(many) <= _sqlite_steps(few) + 50


async def test_sqlite_migration_counts_the_finished_tasks_there(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for script in schema.MIGRATIONS[:10]:
        for statement in schema._statements(script):
            conn.execute(statement)
    conn.execute("CREATE TABLE trioqueue_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO trioqueue_schema (version) VALUES (10)")
    tasks = [_task(i, st, queue=f"q{i % 2}") for st in Status for i in range(5)]
    conn.executemany(
        f"INSERT INTO trioqueue_tasks ({sql.COLUMNS.select}) "
        f"VALUES ({', '.join('?' * len(sql.COLUMNS.names))})",
        sql.COLUMNS.rows(tasks),
    )
    conn.execute("COMMIT")
    conn.close()
    d = await SqliteDriver.connect(path, clock=lambda: T0)
    try:
        counts = await d.counts(None)
    finally:
        await d.aclose()
    assert counts == {"q0": dict.fromkeys(Status, 3), "q1": dict.fromkeys(Status, 2)}
    conn = sqlite3.connect(path)
    try:
        stored = conn.execute(
            f"SELECT queue, status, n FROM {schema.FINISHED_COUNTS} ORDER BY queue, status"
        ).fetchall()
    finally:
        conn.close()
    finals = sorted(s.value for s in Status if s.is_final)
    assert stored == [(q, st, n) for q, n in (("q0", 3), ("q1", 2)) for st in finals]


def _pg_buffers(url: str, schema: str, statement: str) -> int:
    """Shared buffers the plan of ``statement`` (every queue) touched, the store vacuumed.

    (Until a vacuum, the index entries of tasks that left a partial index
    linger, and so do the ledger rows a read folded: the first scan after
    many tasks finished steps over them.)
    """
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("tasks", "finished_counts"):
            conn.execute(
                pgsql.SQL("VACUUM ANALYZE {s}.{t}").format(
                    s=pgsql.Identifier(schema), t=pgsql.Identifier(table)
                )
            )
        row = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement,  # type: ignore[arg-type]
            {"queue": None},
        ).fetchone()
    assert row is not None
    plan: Any = row[0] if not isinstance(row[0], str) else json.loads(row[0])

    def touched(node: dict[str, Any]) -> int:
        own = int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))
        return max([own, *(touched(p) for p in node.get("Plans", []))])

    return touched(plan[0]["Plan"])


async def _pg_store(url: str, schema: str, finished: int) -> int:
    async with PostgresBackend.open(url, schema=schema) as backend:
        d = backend.driver
        await d.insert([_task(i, Status.PENDING) for i in range(WAITING)])
        await d.insert([_task(i + WAITING, Status.PENDING, queue="work") for i in range(finished)])
        while held := await d.claim("work", finished, "tok", 600.0):  # settled as workers do
            await d.settle([Outcome(t.id, Status.DONE) for t in held], "tok")
        counts = await backend.counts()
        assert counts["work"] == {Status.DONE: finished}
        statement = d._admin.counts  # type: ignore[attr-defined]
    return _pg_buffers(url, schema, statement)


@pytest.mark.postgres
async def test_postgres_counts_read_no_finished_task(pg_url: str) -> None:
    few = await _pg_store(pg_url, random_name("tq"), FEW)
    many = await _pg_store(pg_url, random_name("tq"), MANY)
    # A scan of the finished tasks would touch over a hundred buffers more.
    assert many <= few + 5, (few, many)


@pytest.mark.postgres
async def test_postgres_migration_counts_the_finished_tasks_there(pg_url: str) -> None:
    from trioqueue.backends._pg_schema import MIGRATIONS

    name = random_name("tq")
    s = pgsql.Identifier(name)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE SCHEMA {s}").format(s=s))
        for body in MIGRATIONS[:8]:
            conn.execute(pgsql.SQL(body).format(s=s))  # type: ignore[arg-type]
        conn.execute(
            pgsql.SQL("CREATE TABLE {s}.schema_version (version integer NOT NULL)").format(s=s)
        )
        conn.execute(pgsql.SQL("INSERT INTO {s}.schema_version VALUES (8)").format(s=s))
        for i, st in enumerate(st for st in Status for _ in range(5)):
            conn.execute(
                pgsql.SQL(
                    "INSERT INTO {s}.tasks (id, queue, payload, status, run_at, created_at) "
                    "VALUES (%s, %s, '\\x00', %s, 0, 0)"
                ).format(s=s),
                (f"t{i}", f"q{i % 2}", st.value),
            )
    async with PostgresBackend.open(pg_url, schema=name) as backend:
        counts = await backend.counts()
    q0 = {Status(st): n for st, n in zip(Status, [3, 2, 3, 2, 3, 2, 3], strict=True)}
    q1 = {Status(st): n for st, n in zip(Status, [2, 3, 2, 3, 2, 3, 2], strict=True)}
    assert counts == {"q0": q0, "q1": q1}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            pgsql.SQL("SELECT count(*) FROM {s}.finished_counts").format(s=s)
        ).fetchone()
    assert rows is not None and rows[0] == 6  # seeded: one row per queue and final status
