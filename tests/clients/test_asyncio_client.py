"""``trioqueue.asyncio.open_client``: an asyncio app pushes while a Trio worker process runs them.

The tests are plain functions running ``asyncio.run``: the suite's async
tests run on Trio.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from trioqueue import CodecError, Status, TaskCancelled, TaskFailed
from trioqueue.asyncio import AsyncClient, open_client


def run(url: str, test: Callable[[AsyncClient], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        async with open_client(url, queue="jobs", **options) as client:
            await test(client)

    asyncio.run(main())


@pytest.mark.seconds
def test_an_asyncio_app_pushes_and_a_worker_process_runs_the_tasks(
    store_url: str, worker_process: Any
) -> None:
    async def test(client: AsyncClient) -> None:
        tid = await client.push({"n": 21})
        async with asyncio.timeout(60):
            assert await client.wait_result(tid) == 42
            ids = await client.push_bulk({"n": i} for i in range(20))
            results = await asyncio.gather(*(client.wait_result(i) for i in ids))
            assert results == [2 * i for i in range(20)]
            failed = await client.push({"fail": "bad input"})
            with pytest.raises(TaskFailed, match="bad input"):
                await client.wait_result(failed)
            running = await client.push({"block": True})
            assert await asyncio.to_thread(worker_process.line) == f"started {running}"
            assert await client.cancel_task(running)
            with pytest.raises(TaskCancelled):
                await client.wait_result(running)
        task = await client.get_task(tid)
        assert task is not None and task.status is Status.DONE and task.result == 42

    run(store_url, test)


def test_wait_result_under_asyncio_timeout_leaves_the_client_usable(store_url: str) -> None:
    async def test(client: AsyncClient) -> None:
        tid = await client.push(1, delay=3600)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await client.wait_result(tid)
        assert await client.cancel_task(tid)
        with pytest.raises(TaskCancelled):
            await client.wait_result(tid)
        with pytest.raises(LookupError):
            await client.wait_result("no-such-id")
        with pytest.raises(CodecError):
            await client.push(object())

    run(store_url, test, pool_size=1)  # one connection: a broken one would show


def test_a_cancelled_push_is_stored_whole_or_not_at_all(store_url: str) -> None:
    rounds = 40

    async def test(client: AsyncClient) -> None:
        for i in range(rounds):
            # Cancelled after 0 to 7 event-loop turns: before, during and after the statement.
            one = asyncio.ensure_future(client.push({"i": i, "pad": "x" * 500}, id=f"one-{i}"))
            bulk = asyncio.ensure_future(client.push_bulk({"bulk": i, "j": j} for j in range(50)))
            for _ in range(i % 8):
                await asyncio.sleep(0)
            one.cancel()
            bulk.cancel()
            await asyncio.gather(one, bulk, return_exceptions=True)

    run(store_url, test)

    async def check(client: AsyncClient) -> None:
        stored = 0
        for i in range(rounds):
            task = await client.get_task(f"one-{i}")
            if task is not None:
                stored += 1
                assert task.args == {"i": i, "pad": "x" * 500} and task.status is Status.PENDING
        # Cancelled before its first step: never stored; after it: stored whole.
        assert 0 < stored < rounds
        assert await client.push(1) is not None

    run(store_url, check)
    counts = _bulk_sizes(store_url)  # every bulk push there has its 50 tasks
    assert counts and set(counts.values()) == {50}, counts
    assert len(counts) < rounds


def _bulk_sizes(url: str) -> dict[int, int]:
    query = (
        "SELECT convert_from(payload, 'UTF8')::json->>'bulk', count(*) FROM trioqueue.tasks "
        "WHERE convert_from(payload, 'UTF8')::json->>'bulk' IS NOT NULL GROUP BY 1"
    )
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute(
                "SELECT json_extract(payload, '$.bulk'), count(*) FROM trioqueue_tasks "
                "WHERE json_extract(payload, '$.bulk') IS NOT NULL GROUP BY 1"
            ).fetchall()
    else:
        with psycopg.connect(url) as pg:
            rows = pg.execute(query).fetchall()
    return {int(k): int(n) for k, n in rows}


@pytest.mark.postgres
def test_push_in_with_asyncio_and_sync_psycopg_connections(pg_url: str) -> None:
    async def test(client: AsyncClient) -> None:
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            gone = await client.push_in(conn, {"order": 1})
            await conn.rollback()
            kept = await client.push_in(conn, {"order": 2})
            assert await client.get_task(kept) is None  # not committed yet
            await conn.commit()
        assert await client.get_task(gone) is None
        task = await client.get_task(kept)
        assert task is not None and task.args == {"order": 2}
        with psycopg.connect(pg_url) as sync_conn:
            gone = await client.push_in(sync_conn, {"order": 3})
            sync_conn.rollback()
            kept = await client.push_in(sync_conn, {"order": 4})
            sync_conn.commit()
        assert await client.get_task(gone) is None
        assert (await client.get_task(kept)) is not None
        with pytest.raises(TypeError, match="psycopg connection"):
            await client.push_in(object(), {"order": 5})

    run(pg_url, test)


def test_push_in_with_the_apps_sqlite_connection(tmp_path: Path) -> None:
    path = tmp_path / "app.db"

    async def test(client: AsyncClient) -> None:
        conn = sqlite3.connect(path)
        gone = await client.push_in(conn, {"order": 1})
        conn.rollback()
        kept = await client.push_in(conn, {"order": 2})
        conn.commit()
        conn.close()
        assert await client.get_task(gone) is None
        task = await client.get_task(kept)
        assert task is not None and task.args == {"order": 2}

    run(f"sqlite:///{path}", test)
