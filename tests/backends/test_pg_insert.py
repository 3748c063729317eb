"""PostgreSQL inserts: a lone push, group commit of concurrent pushes, bulk pushes by COPY.

Failures are real: a trigger installed on the tasks table refuses rows, as a
constraint or a full disk would, and the tests look at what was stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
import trio
from pg_support import pg_url, random_name
from psycopg import sql

from trioqueue import PushError, Task
from trioqueue._driver import StoredTask
from trioqueue._task import Status
from trioqueue.backends._pg_copy import binary_copy
from trioqueue.backends._pg_driver import COPY_MIN
from trioqueue.backends._pg_pool import NativeRunner
from trioqueue.backends.postgres import PostgresBackend

__all__ = ["pg_url"]

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> str:
    return random_name("tq")


@asynccontextmanager
async def refusing(url: str, schema: str, **options: Any) -> AsyncIterator[PostgresBackend]:
    """A backend whose table refuses any row whose payload holds ``poison``, or every
    row while the ``refuse_all`` table has a row (storage that fails every commit)."""
    async with PostgresBackend.open(url, schema=schema, **options) as b:
        s = sql.Identifier(schema)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(sql.SQL("CREATE TABLE {s}.refuse_all (x int)").format(s=s))
            c.execute(
                sql.SQL(
                    """CREATE FUNCTION {s}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                      IF position('poison' in convert_from(NEW.payload, 'UTF8')) > 0
                         OR EXISTS (SELECT 1 FROM {s}.refuse_all) THEN
                        RAISE EXCEPTION 'refused: %', NEW.id;
                      END IF;
                      RETURN NEW;
                    END $$"""
                ).format(s=s)
            )
            c.execute(
                sql.SQL(
                    "CREATE TRIGGER refuse BEFORE INSERT ON {s}.tasks "
                    "FOR EACH ROW EXECUTE FUNCTION {s}.refuse()"
                ).format(s=s)
            )
        yield b


def refuse_all(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(sql.SQL("INSERT INTO {}.refuse_all VALUES (1)").format(sql.Identifier(schema)))


async def push_concurrently(b: PostgresBackend, items: list[str]) -> dict[str, BaseException]:
    """Push every item from its own task at once; return the error of each that failed."""
    errors: dict[str, BaseException] = {}

    async def one(item: str) -> None:
        try:
            await b.push(item)
        except PushError as exc:
            errors[item] = exc

    async with trio.open_nursery() as n:
        for item in items:
            n.start_soon(one, item)
    return errors


async def test_concurrent_pushes_share_one_insert(pg_url: str, schema: str) -> None:
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        calls = 0
        insert = b.driver.insert

        async def counting(tasks: Any) -> int:
            nonlocal calls
            calls += 1
            return await insert(tasks)

        b.driver.insert = counting  # type: ignore[method-assign]
        assert await push_concurrently(b, [f"p{i}" for i in range(50)]) == {}
        assert (await b.counts())[b.queue] == {"pending": 50}
        # the first went alone at once; the 49 that came meanwhile in far fewer inserts
        assert 2 <= calls <= 10


async def test_group_commit_refused_push_fails_alone(pg_url: str, schema: str) -> None:
    async with refusing(pg_url, schema) as b:
        items = [f"ok{i}" for i in range(30)] + ["poison"] + [f"ok{i}" for i in range(30, 60)]
        errors = await push_concurrently(b, items)
        assert list(errors) == ["poison"]  # the others merged with it were stored
        tasks = await b.list_tasks(limit=100)
        assert sorted(t.args for t in tasks) == sorted(i for i in items if i != "poison")


async def test_group_commit_failed_commit_fails_every_push(pg_url: str, schema: str) -> None:
    async with refusing(pg_url, schema) as b:
        refuse_all(pg_url, schema)
        items = [f"p{i}" for i in range(40)]
        errors = await push_concurrently(b, items)
        assert sorted(errors) == sorted(items)  # none reported stored...
        assert all(isinstance(e.__cause__, psycopg.Error) for e in errors.values())
        assert await b.counts() == {}  # ...and none stored


async def test_bulk_push_goes_by_copy_and_skips_existing_ids(pg_url: str, schema: str) -> None:
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        await b.push("first", id="dup")
        tasks = [Task(f"t{i}", id=f"id{i:04d}") for i in range(COPY_MIN * 2)]
        tasks.append(Task("second", id="dup"))
        await b.push_all(_aiter(tasks))
        assert (await b.counts())[b.queue] == {"pending": 1 + COPY_MIN * 2}  # "dup" skipped
        dup = await b.get_task("dup")
        assert dup is not None and dup.args == "first"
        copies = 0
        copy_in = b.driver._runner.copy_in

        async def counting(*args: Any) -> None:
            nonlocal copies
            copies += 1
            await copy_in(*args)

        b.driver._runner.copy_in = counting  # type: ignore[method-assign]
        ids = await b.push_bulk([f"bulk{i}" for i in range(COPY_MIN * 3)])
        assert copies == 1  # one COPY for the whole batch
        got = {t.id: t.args for t in await b.list_tasks(limit=1000)}
        assert len(got) == 1 + COPY_MIN * 5
        assert all(got[i] == f"bulk{n}" for n, i in enumerate(ids))


async def test_refused_bulk_push_stores_nothing(pg_url: str, schema: str) -> None:
    async with refusing(pg_url, schema) as b:
        items = [f"ok{i}" for i in range(COPY_MIN * 2)] + ["poison"]
        with pytest.raises(PushError):
            await b.push_bulk(items)
        assert await b.counts() == {}


async def test_copy_cancelled_midway_leaves_no_row_and_no_connection(
    pg_url: str, schema: str
) -> None:
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        s = b.driver._sql
        records = [b._record("x" * 200, now=b._now(), queue=b.queue) for _ in range(50_000)]
        data = list(binary_copy(records))
        runner = NativeRunner(pg_url, pool_size=1, statement_timeout=30, connect_timeout=10)
        try:
            await runner.fetch("SELECT 1", None)  # one pooled, idle connection
            with trio.move_on_after(0.02) as scope:
                await runner.copy_in(s.copy, data, s.notify([b.queue]))
            assert scope.cancelled_caught
            # the connection in an unknown state was closed, never pooled again
            assert repr(runner) == "<NativeRunner open idle=0 busy=0 pool_size=1>"
            assert await runner.fetch("SELECT 2", None) == [(2,)]
        finally:
            await runner.aclose()
        assert await b.counts() == {}


async def _aiter(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def varied_records(n: int) -> list[StoredTask]:
    """Records whose every copied column takes values at its edges."""
    out = []
    for i in range(n):
        out.append(
            StoredTask(
                id=f"v{i:04d}-é\t\\",
                queue=("q-ü\n" if i % 2 else "plain"),
                payload=bytes(range(256))[i % 256 :] + b"\\x00\n\t",
                status=Status.PENDING if i % 3 else Status.FAILED,
                attempts=i % 3,
                max_attempts=1 + i,
                run_at=1_700_000_000.123456 + i / 7,
                priority=(-1) ** i * (2**40 + i),
                meta={"k": "väl\u2603", "n": i, "nested": [1, {"x": None}]} if i % 2 else {},
                created_at=1_600_000_000.5 + i,
            )
        )
    return out


@pytest.mark.parametrize("runner", ["native", "asyncio", "thread"])
async def test_binary_copy_round_trips_every_column(pg_url: str, schema: str, runner: str) -> None:
    async with PostgresBackend.open(pg_url, schema=schema, runner=runner) as b:
        records = varied_records(COPY_MIN * 2)
        assert await b.driver.insert(records) == len(records)
        got = {t.id: t for t in await b.driver.get_many([r.id for r in records])}
        for r in records:
            assert dataclasses.asdict(got[r.id]) == dataclasses.asdict(r)


async def test_binary_copy_of_a_value_out_of_range_stores_nothing(pg_url: str, schema: str) -> None:
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        records = varied_records(COPY_MIN * 2)
        records[-1].priority = 2**70  # no bigint holds it
        with pytest.raises(psycopg.DataError, match="cannot be copied"):
            await b.driver.insert(records)
        assert await b.counts() == {}
        assert await b.driver.insert(records[:-1]) == len(records) - 1  # the connection is fine
