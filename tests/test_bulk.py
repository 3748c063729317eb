"""Bulk operations on every backend: filters walked in bounded pages, to the end, once each."""

from __future__ import annotations

import sqlite3
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from backend_factories import Factory, _pg_database, open_postgres
from psycopg import sql

from trioqueue import Backend, MemoryBackend, Status
from trioqueue._bulk import BULK_PAGE, bulk_apply, bulk_count, walk
from trioqueue._driver import Outcome, StoredTask
from trioqueue.backends.sqlite import SqliteBackend

#: More tasks than two pages, and their ids more than one NOTIFY's 8,000 bytes.
MANY = 2 * BULK_PAGE + 123


async def _killed(backend: Backend, n: int) -> list[str]:
    """Push ``n`` tasks, claim them and settle them KILLED; return their ids."""
    ids = [str(id) for id in await backend.push_bulk([{"i": i} for i in range(n)])]
    assert len(await backend.driver.claim(backend.queue, n, "tok", 3600.0)) == n
    await backend.driver.settle([Outcome(id, Status.KILLED, error="x") for id in ids], "tok")
    return ids


async def _statuses(backend: Backend) -> dict[Status, int]:
    counts = await backend.counts(queue=backend.queue)
    return {s: n for s, n in counts.get(backend.queue, {}).items() if n}


async def test_retry_cancel_and_delete_of_more_than_a_page(open_backend: Factory) -> None:
    async with open_backend(queue="bulk") as backend:
        await _killed(backend, MANY)
        got = await bulk_apply(backend, "retry", queue="bulk", statuses=[Status.KILLED])
        assert got == MANY and await _statuses(backend) == {Status.PENDING: MANY}
        # a confirmation's count bounds the walk
        got = await bulk_apply(
            backend, "cancel", queue="bulk", statuses=[Status.PENDING], at_most=BULK_PAGE + 1
        )
        assert got == BULK_PAGE + 1
        rest = MANY - BULK_PAGE - 1
        assert await _statuses(backend) == {Status.PENDING: rest, Status.CANCELLED: BULK_PAGE + 1}
        got = await bulk_apply(backend, "cancel", queue=None, statuses=[Status.PENDING])
        assert got == rest and await _statuses(backend) == {Status.CANCELLED: MANY}
        old = await bulk_count(backend, lambda t: True, queue="bulk", statuses=[Status.CANCELLED])
        assert old == MANY
        got = await bulk_apply(backend, "delete", queue="bulk", statuses=[Status.CANCELLED])
        assert got == MANY and await _statuses(backend) == {}


async def test_purge_deletes_more_than_a_batch(open_backend: Factory) -> None:
    async with open_backend(queue="bulk") as backend:
        await _killed(backend, MANY)
        assert await backend.purge(older_than=0) == MANY
        assert await _statuses(backend) == {}


async def test_a_walk_visits_each_task_once_while_they_change(open_backend: Factory) -> None:
    # Each page's tasks are retried, then fail again at once (a busy worker):
    # they match the filter again, behind the walk, which still ends.
    async with open_backend(queue="bulk") as backend:
        await _killed(backend, MANY)
        seen: list[str] = []
        pages: list[int] = []

        async def retry_then_fail(page: list[StoredTask]) -> int:
            ids = [t.id for t in page]
            seen.extend(ids)
            pages.append(len(ids))
            n = await backend.driver.retry_many(ids)
            again = await backend.driver.claim(backend.queue, len(ids), "tok2", 3600.0)
            await backend.driver.settle(
                [Outcome(r.id, Status.KILLED, error="again") for r in again], "tok2"
            )
            return n

        got = await walk(backend, retry_then_fail, queue="bulk", statuses=[Status.KILLED])
        assert got == MANY and len(seen) == len(set(seen)) == MANY
        assert max(pages) <= BULK_PAGE
        assert await _statuses(backend) == {Status.KILLED: MANY}


#: Tasks of the long runs.
MILLION = 1_000_000
#: Memory a bulk operation may trace at its peak: holding a million ids alone takes ~80 MB.
PEAK_BOUND = 24 * 2**20

SetAll = Callable[[str], Awaitable[None]]


async def _push_million(backend: Backend) -> None:
    for start in range(0, MILLION, 100_000):
        await backend.push_bulk([{"i": i} for i in range(start, start + 100_000)])


async def _measured_op(
    what: str, times: dict[str, float], op: Awaitable[int], bound: float = PEAK_BOUND
) -> int:
    tracemalloc.start()
    began = time.perf_counter()
    try:
        n = await op
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    times[what] = time.perf_counter() - began
    assert peak < bound, f"{what} of {n} tasks traced {peak} bytes at its peak"
    return n


async def _every_operation_on_a_million(
    backend: Backend,
    set_all: SetAll,
    analyze: Callable[[], Awaitable[None]],
    bound: float = PEAK_BOUND,
) -> dict[str, float]:
    """Retry, cancel, delete and purge a million tasks; return the seconds each took.

    ``analyze`` brings the planner's statistics up to date after each change
    of every task's status, as autovacuum would within a minute or so.
    """
    q, times = backend.queue, {}

    def _measured(what: str, times: dict[str, float], op: Awaitable[int]) -> Awaitable[int]:
        return _measured_op(what, times, op, bound)

    await _push_million(backend)
    await set_all("killed")
    got = await _measured("retry", times, bulk_apply(backend, "retry", queue=q,
                          statuses=[Status.FAILED, Status.KILLED]))  # fmt: skip
    assert got == MILLION and await _statuses(backend) == {Status.PENDING: MILLION}
    await analyze()
    got = await _measured("cancel", times, bulk_apply(backend, "cancel", queue=q,
                          statuses=[Status.PENDING, Status.FAILED]))  # fmt: skip
    assert got == MILLION and await _statuses(backend) == {Status.CANCELLED: MILLION}
    await analyze()
    got = await _measured("delete", times, bulk_apply(backend, "delete", queue=q,
                          statuses=[Status.CANCELLED]))  # fmt: skip
    assert got == MILLION and await _statuses(backend) == {}
    await _push_million(backend)
    await set_all("done")
    got = await _measured("purge", times, backend.purge(older_than=0))
    assert got == MILLION and await _statuses(backend) == {}
    return times


@pytest.mark.slow
async def test_a_million_tasks_in_memory() -> None:
    async with MemoryBackend.open(queue="bulk") as backend:
        driver: Any = backend.driver

        async def set_all(status: str) -> None:
            await trio.lowlevel.checkpoint()
            for t in driver._tasks.values():
                t.status, t.finished_at = Status(status), time.time() - 60

        # The store itself grows (a retried task joins its queue's ready heap):
        # only the walk's own memory is bounded here, loosely.
        loose = 256 * 2**20
        times = await _every_operation_on_a_million(
            backend, set_all, trio.lowlevel.checkpoint, loose
        )
    print(f"\nmemory, {MILLION} tasks:", {k: round(v, 1) for k, v in times.items()})


@pytest.mark.slow
async def test_a_million_tasks_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"

    def update(status: str) -> None:
        with sqlite3.connect(path, timeout=60) as conn:
            conn.execute(
                "UPDATE trioqueue_tasks SET status = ?, finished_at = ?", (status, time.time() - 60)
            )

    async def set_all(status: str) -> None:
        await trio.to_thread.run_sync(update, status)

    async def analyze() -> None:  # the listings name their indexes: nothing to do
        await trio.lowlevel.checkpoint()

    async with SqliteBackend.open(f"sqlite:///{path}", queue="bulk") as backend:
        times = await _every_operation_on_a_million(backend, set_all, analyze)
    print(f"\nsqlite, {MILLION} tasks:", {k: round(v, 1) for k, v in times.items()})


@pytest.mark.slow
@pytest.mark.postgres
async def test_a_million_tasks_on_postgres() -> None:
    url = await trio.to_thread.run_sync(_pg_database)
    async with open_postgres(queue="bulk") as backend:
        table = sql.Identifier(backend.driver.schema, "tasks")  # type: ignore[attr-defined]

        def update(status: str) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                query = sql.SQL("UPDATE {} SET status = %s, finished_at = %s").format(table)
                conn.execute(query, (status, time.time() - 60))
                conn.execute(sql.SQL("ANALYZE {}").format(table))

        async def set_all(status: str) -> None:
            await trio.to_thread.run_sync(update, status)

        def analyzed() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("ANALYZE {}").format(table))

        async def analyze() -> None:
            await trio.to_thread.run_sync(analyzed)

        times = await _every_operation_on_a_million(backend, set_all, analyze)
    print(f"\npostgres, {MILLION} tasks:", {k: round(v, 1) for k, v in times.items()})


async def test_sqlite_pages_below_an_id_search_their_index(tmp_path: Path) -> None:
    # A walk's page reads from its bound down, never again every entry above
    # it: the id bound is a range of the index each listing reads.
    from trioqueue.backends import _sqlite_statements as statements

    async with SqliteBackend.open(f"sqlite:///{tmp_path}/t.db", queue="bulk") as backend:
        await _killed(backend, 10)
        conn = sqlite3.connect(tmp_path / "t.db")
        try:
            params = {"queue": "bulk", "before": "x", "limit": 500, "offset": 0}
            # (The other indexes hold at most ``LIST_PROBE`` tasks of their status.)
            ordered = ("INDEXED BY sqlite_autoindex", "INDEXED BY trioqueue_tasks_status_rare")
            for query, below in statements.BELOW.items():
                if "INDEXED BY" in query and not any(i in query for i in ordered):
                    continue
                plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + below, params)]
                assert any("SEARCH" in step and "id<?" in step for step in plan), (query, plan)
        finally:
            conn.close()
