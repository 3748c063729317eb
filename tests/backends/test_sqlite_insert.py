"""SQLite: new tasks inserted with their eight own columns are stored exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from trioqueue import StoredTask
from trioqueue.backends import _sqlite_statements as sql
from trioqueue.backends.sqlite import SqliteDriver

T0 = 1_700_000_000.123456789

# Payloads and values to keep intact: escapes, astral characters, quotes, NULs,
# bytes that are not UTF-8, edges of the integer columns, times with every bit
# of their mantissa used.
PAYLOADS = [
    b'{"a":1}',
    b'"\\u00e9\\n\\t \\" \\\\ /"',
    "\"é 😀 ✓ ' \\\"\"".encode(),
    b"",
    b"[" + b"1," * 500 + b"1]",
    b'"\\\\u0000"',  # the six characters \u0000 in a JSON text: not a NUL
    b"\xff\xfe not UTF-8",
    b"a NUL \x00 inside",
]


def fresh(i: int, payload: bytes, **fields: Any) -> StoredTask:
    return StoredTask(
        id=fields.pop("id", f"t{i:04d}-ü"),
        queue=fields.pop("queue", "q"),
        payload=payload,
        max_attempts=fields.pop("max_attempts", 1 + i),
        run_at=fields.pop("run_at", T0 + i / 7),
        priority=fields.pop("priority", (-1) ** i * (2**63 - 1 - i)),
        meta=fields.pop("meta", {"k": i, "s": "ü\\"} if i % 2 else {}),
        created_at=fields.pop("created_at", T0 - i / 3),
        **fields,
    )


def batch(payloads: list[bytes], n: int = 40) -> list[StoredTask]:
    return [fresh(i, payloads[i % len(payloads)]) for i in range(n)]


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    d = await SqliteDriver.connect(str(tmp_path / "tasks.db"), clock=lambda: T0)
    try:
        yield d
    finally:
        await d.aclose()


def stored_as(tmp_path: Path, statement: str, rows: list[Any]) -> list[tuple[Any, ...]]:
    """The rows ``statement`` leaves in a new file, read raw (types included)."""
    from trioqueue.backends import _sqlite_schema as schema

    path = str(tmp_path / f"raw-{len(statement)}.db")
    conn, _ = schema.open_connection(path, 1.0, "normal", True)
    try:
        conn.executemany(statement, rows)
        return conn.execute(
            "SELECT *, typeof(payload), typeof(run_at), typeof(priority) FROM trioqueue_tasks "
            "ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_new_tasks_store_what_binding_every_column_stores(tmp_path: Path) -> None:
    tasks = batch(PAYLOADS)
    statement, rows = sql.insert_rows(tasks)
    assert statement == sql.INSERT_FRESH
    fresh = stored_as(tmp_path, statement, rows)
    every = stored_as(tmp_path, sql.INSERT, sql.COLUMNS.rows(tasks))
    assert len(fresh) == len(tasks)
    assert fresh == every
    assert {r[-3:] for r in fresh} == {("blob", "real", "integer")}


def test_a_task_that_is_not_new_binds_every_column() -> None:
    tasks = batch(PAYLOADS)
    tasks[3].attempts = 1
    assert sql.insert_rows(tasks)[0] == sql.INSERT


async def test_a_batch_round_trips_and_skips_taken_ids(driver: SqliteDriver) -> None:
    tasks = batch(PAYLOADS)
    assert await driver.insert(tasks[:10]) == 10
    assert await driver.insert(tasks) == len(tasks) - 10  # the first ten are taken
    got = {t.id: t for t in await driver.get_many([t.id for t in tasks])}
    for t in tasks:
        assert asdict(got[t.id]) == asdict(t)
