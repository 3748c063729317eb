"""Listing the tasks of one status: right rows, newest first, by an index, on SQLite and PostgreSQL.

Only the statuses few tasks have (failed, killed, cancelled) keep a (status, id)
index; the others are listed by the index their status already has or by a
walk of the ids from the newest, so that a push, a claim, a start and a done
add no index entry for listings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pg_support import pg_url, random_name
from psycopg import sql as pgsql

from trioqueue import Status, StoredTask
from trioqueue.backends import _sqlite_listing
from trioqueue.backends import _sqlite_statements as sql
from trioqueue.backends._sqlite_schema import RARE
from trioqueue.backends.postgres import PostgresBackend
from trioqueue.backends.sqlite import SqliteDriver

__all__ = ["pg_url"]

T0 = 1_700_000_000.0
FINAL = (Status.DONE, Status.KILLED, Status.CANCELLED)


def stored(i: int, status: Status, queue: str) -> StoredTask:
    held = status in (Status.QUEUED, Status.RUNNING)
    return StoredTask(
        id=f"{i:026d}",
        queue=queue,
        payload=b"1",
        status=status,
        attempts=1 if status is not Status.PENDING else 0,
        run_at=T0,
        created_at=T0,
        finished_at=T0 + i if status in FINAL else None,
        lease_token="t" if held else None,
        lease_expires_at=T0 + 60 if held else None,
        last_error="E" if status in (Status.FAILED, Status.KILLED, Status.CANCELLED) else None,
    )


def mixed(n: int = 140) -> list[StoredTask]:
    """Tasks of every status and two queues, interleaved in id order."""
    statuses = list(Status)
    return [stored(i, statuses[i % len(statuses)], "a" if i % 3 else "b") for i in range(n)]


async def check_listings(driver: Any, tasks: list[StoredTask]) -> None:
    """Every status, with and without a queue, paged by offset and by ``before``."""
    for status in Status:
        for queue in (None, "a", "b"):
            want = sorted(
                (t.id for t in tasks if t.status is status and queue in (None, t.queue)),
                reverse=True,
            )
            assert want, (status, queue)
            got = await driver.list_tasks(queue=queue, status=status, limit=1000, offset=0)
            assert [t.id for t in got] == want, (status, queue)
            assert all(t.status is status for t in got)
            page = await driver.list_tasks(queue=queue, status=status, limit=3, offset=2)
            assert [t.id for t in page] == want[2:5]
            below = await driver.list_tasks(
                queue=queue, status=status, limit=4, offset=0, before=want[1]
            )
            assert [t.id for t in below] == want[2:6]


# -- SQLite --


@pytest.fixture
async def sqlite_driver(tmp_path: Path) -> AsyncIterator[SqliteDriver]:
    d = await SqliteDriver.connect(str(tmp_path / "tasks.db"), clock=lambda: T0)
    try:
        yield d
    finally:
        await d.aclose()


@pytest.mark.parametrize("probe", [sql.LIST_PROBE, 0], ids=["by-status-index", "by-id-walk"])
async def test_sqlite_lists_each_status_newest_first(
    sqlite_driver: SqliteDriver, probe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # probe 0: PENDING and DONE take the walk over the ids a large store takes.
    monkeypatch.setattr(sql, "LIST_PROBE", probe)
    tasks = mixed()
    assert await sqlite_driver.insert(tasks) == len(tasks)
    await check_listings(sqlite_driver, tasks)


def _plan(conn: Any, query: str) -> list[str]:
    params = {"queue": None, "before": None, "limit": 50, "offset": 0}
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query, params)]


async def test_sqlite_listings_read_an_index_and_pushes_add_no_status_entry(
    sqlite_driver: SqliteDriver,
) -> None:
    tasks = mixed()
    await sqlite_driver.insert(tasks)

    def check(conn: Any) -> None:
        for status, query in sql.LIST_TASKS_OF_STATUS.items():
            index = _sqlite_listing._STATUS_INDEX[status][0]
            plan = _plan(conn, query)
            assert any(f"USING INDEX {index}" in step for step in plan), (status, plan)
        for query in sql.LIST_TASKS_OF_STATUS_BY_ID.values():
            plan = _plan(conn, query)
            assert plan == ["SCAN trioqueue_tasks USING INDEX sqlite_autoindex_trioqueue_tasks_1"]
        # The (status, id) index holds the rare statuses only.
        rare = conn.execute(
            "SELECT count(*) FROM trioqueue_tasks INDEXED BY trioqueue_tasks_status_rare "
            f"WHERE {RARE}"
        ).fetchone()[0]
        names = {"failed", "killed", "cancelled"}
        assert rare == sum(t.status.value in names for t in tasks)

    await sqlite_driver.db.call(check, offload=True)


# -- PostgreSQL --


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = random_name("tq_list")
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(name)))


@pytest.mark.postgres
async def test_postgres_lists_each_status_newest_first(pg_url: str, schema: str) -> None:
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        tasks = mixed()
        assert await b.driver.insert(tasks) == len(tasks)
        await check_listings(b.driver, tasks)


@pytest.mark.postgres
@pytest.mark.parametrize("many", ["done", "pending"])
async def test_postgres_listings_never_scan_the_whole_table(
    pg_url: str, schema: str, many: str
) -> None:
    # A store of many tasks of one status and a few of each other: every
    # listing is an index scan, whichever status it asks for.
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        await b.driver.insert(mixed())
    s = pgsql.Identifier(schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            pgsql.SQL(
                "INSERT INTO {s}.tasks (id, queue, payload, status, run_at, created_at, "
                "finished_at) SELECT 'x' || lpad(g::text, 25, '0'), 'a', '\\x31', %s, 0, 0, "
                "CASE WHEN %s = 'done' THEN 0 END FROM generate_series(1, 20000) g"
            ).format(s=s),
            (many, many),
        )
        conn.execute(pgsql.SQL("ANALYZE {s}.tasks").format(s=s))
        from trioqueue.backends._pg_admin_sql import AdminStatements
        from trioqueue.backends._pg_statements import Statements

        admin = AdminStatements(schema, Statements(schema))
        params = {"queue": None, "before": None, "limit": 50, "offset": 0}
        for status, query in admin.list_tasks_of_status.items():
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))
            assert "Seq Scan" not in plan, (status, plan)
            if status in (Status.FAILED, Status.KILLED, Status.CANCELLED):
                assert "tasks_status_rare" in plan, (status, plan)
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,)
            )
        }
        assert "tasks_status" not in indexes and "tasks_status_rare" in indexes
