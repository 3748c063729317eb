"""A stored row a driver cannot read fails alone: KILLED with its reason, its batch runs.

Memory cannot hold such rows; SQLite and PostgreSQL can (corrupted with raw SQL).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest
import trio
from backend_factories import BACKENDS
from psycopg import sql

from trioqueue import Backend, Status, TaskId, WorkerBuilder

# (backend, a corruption of one row) -> the field the reason names
SQLITE_CORRUPTIONS = {
    "payload stored as text": (
        "UPDATE trioqueue_tasks SET payload = '\"x\"' WHERE id = ?",
        "payload",
    ),
    "meta not JSON": ("UPDATE trioqueue_tasks SET meta = '{not json' WHERE id = ?", "meta"),
    "meta not an object": ("UPDATE trioqueue_tasks SET meta = '[1, 2]' WHERE id = ?", "meta"),
}
PG_CORRUPTIONS = {
    "meta nested 5000 deep": (
        "UPDATE {s}.tasks SET meta = (repeat('[', 5000) || repeat(']', 5000))::jsonb WHERE id = %s",
        "meta",
    ),
    "meta not an object": ("UPDATE {s}.tasks SET meta = '\"text\"'::jsonb WHERE id = %s", "meta"),
}


def _sqlite_run(backend: Backend, statement: str, *args: object) -> None:
    conn = sqlite3.connect(backend.driver.path, isolation_level=None)  # type: ignore[attr-defined]
    try:
        conn.execute(statement, args)
    finally:
        conn.close()


def _pg_run(backend: Backend, statement: str, *args: object) -> None:
    from backend_factories import _pg_database

    schema = sql.Identifier(backend.driver.schema)  # type: ignore[attr-defined]
    with psycopg.connect(_pg_database(), autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(s=schema), args)  # type: ignore[arg-type]


CASES = [
    pytest.param("sqlite", _sqlite_run, *case, id=f"sqlite-{name}")
    for name, case in SQLITE_CORRUPTIONS.items()
] + [
    pytest.param("postgres", _pg_run, *case, id=f"postgres-{name}")
    for name, case in PG_CORRUPTIONS.items()
]

Run = Callable[..., None]


@pytest.mark.parametrize(("backend_name", "run", "statement", "field"), CASES)
async def test_an_unreadable_row_is_killed_and_its_batch_runs_once(
    backend_name: str, run: Run, statement: str, field: str
) -> None:
    ran: Counter[str] = Counter()

    async def handler(args: str, task_id: TaskId) -> None:
        ran[task_id] += 1

    async with BACKENDS[backend_name]() as backend:
        good = [await backend.push("ok", id=f"good-{i}") for i in range(5)]
        await backend.push("ok", id="bad", priority=1)  # in the middle of the first claim
        await trio.to_thread.run_sync(run, backend, statement, "bad")
        # The admin listings show the row before and after the claim.
        listed = {t.id: t for t in await backend.list_tasks()}
        assert listed["bad"].last_error is not None
        assert listed["bad"].last_error.startswith(f"unreadable row: {field}: ")
        worker = WorkerBuilder("w").backend(backend).concurrency(8).build(handler)
        with trio.fail_after(10):  # a stranded batch waits for its 30 s leases
            await worker.run(burst=True)
        assert ran == dict.fromkeys(good, 1)
        for id in good:
            task = await backend.get_task(id)
            assert task is not None and (task.status, task.attempts) == (Status.DONE, 1)
        bad = await backend.get_task("bad")
        assert bad is not None and bad.status is Status.KILLED
        assert bad.last_error is not None
        assert bad.last_error.startswith(f"unreadable row: {field}: "), bad.last_error
        assert await backend.counts() == {"default": {Status.DONE: 5, Status.KILLED: 1}}


async def test_an_unknown_status_is_listed_and_counted_as_killed() -> None:
    async with BACKENDS["sqlite"]() as backend:
        await backend.push("ok", id="odd")
        await backend.push("ok", id="fine")
        await trio.to_thread.run_sync(
            _sqlite_run, backend, "UPDATE trioqueue_tasks SET status = 'zombie' WHERE id = ?", "odd"
        )
        assert await backend.counts() == {"default": {Status.KILLED: 1, Status.PENDING: 1}}
        odd = await backend.get_task("odd")
        assert odd is not None and odd.status is Status.KILLED
        assert odd.last_error == "unreadable row: unknown status 'zombie'"
        assert [t.id for t in await backend.list_tasks()] == ["odd", "fine"]
