"""SQLite: new tasks inserted as one JSON array are stored as binding each row stores them."""

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

# Values JSON must carry intact: escapes, astral characters, quotes, edges of
# the integer columns, times with every bit of their mantissa used.
PAYLOADS = [
    b'{"a":1}',
    b'"\\u00e9\\n\\t \\" \\\\ /"',
    "\"é 😀 ✓ ' \\\"\"".encode(),
    b"",
    b"[" + b"1," * 500 + b"1]",
    b'"\\\\u0000"',  # the six characters \u0000 in a JSON text: not a NUL
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


def stored_as(tmp_path: Path, tasks: list[StoredTask], json_min: int) -> list[tuple[Any, ...]]:
    """The rows an insert of ``tasks`` leaves in a new file, read raw (types included)."""
    from trioqueue.backends import _sqlite_schema as schema

    path = str(tmp_path / f"raw-{json_min}.db")
    conn, _ = schema.open_connection(path, 1.0, "normal", True)
    try:
        statement, rows = sql.insert_rows(tasks)
        assert (statement == sql.INSERT_FRESH_JSON) == (len(tasks) >= json_min)
        conn.executemany(statement, rows)
        return conn.execute(
            "SELECT *, typeof(payload), typeof(run_at), typeof(priority) FROM trioqueue_tasks "
            "ORDER BY id"
        ).fetchall()
    finally:
        conn.close()


def test_the_json_array_stores_what_bound_rows_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = batch(PAYLOADS)
    by_json = stored_as(tmp_path, tasks, sql.JSON_MIN)
    monkeypatch.setattr(sql, "JSON_MIN", len(tasks) + 1)
    by_rows = stored_as(tmp_path, tasks, len(tasks) + 1)
    assert len(by_json) == len(tasks)
    assert by_json == by_rows
    assert {r[-3:] for r in by_json} == {("blob", "real", "integer")}


@pytest.mark.parametrize(
    "odd",
    [b"\xff\xfe not UTF-8", b'"\x00"', b"a NUL \x00 inside"],
    ids=["not-utf8", "nul-in-json", "nul-in-text"],
)
async def test_a_value_json_cannot_carry_goes_as_bound_rows(
    driver: SqliteDriver, odd: bytes
) -> None:
    tasks = batch([*PAYLOADS, odd])
    assert sql.insert_rows(tasks)[0] == sql.INSERT_FRESH
    assert await driver.insert(tasks) == len(tasks)
    got = {t.id: t for t in await driver.get_many([t.id for t in tasks])}
    for t in tasks:
        assert asdict(got[t.id]) == asdict(t)


async def test_a_json_batch_round_trips_and_skips_taken_ids(driver: SqliteDriver) -> None:
    tasks = batch(PAYLOADS)
    assert sql.insert_rows(tasks)[0] == sql.INSERT_FRESH_JSON
    assert await driver.insert(tasks[:10]) == 10
    assert await driver.insert(tasks) == len(tasks) - 10  # the first ten are taken
    got = {t.id: t for t in await driver.get_many([t.id for t in tasks])}
    for t in tasks:
        assert asdict(got[t.id]) == asdict(t)


def test_a_time_that_is_not_finite_goes_as_bound_rows() -> None:
    tasks = batch(PAYLOADS)
    tasks[3].run_at = float("inf")
    assert sql.insert_rows(tasks)[0] == sql.INSERT_FRESH
    assert sql.fresh_json([("i", "q", b"x", 1, float("nan"), 0, "{}", 0.0)]) is None
