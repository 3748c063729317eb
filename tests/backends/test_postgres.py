"""The PostgreSQL backend against a real server (a fresh database for this module)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest
import trio
import trio_asyncio
from pg_support import FakeClock, pg_url, random_name
from psycopg.rows import dict_row

from trioqueue import Attempt, BackendError, Outcome, PushError, Status, StoredTask, WorkerBuilder
from trioqueue._context import EventKind, WorkerEvent
from trioqueue.backends.postgres import PostgresBackend, migrate

__all__ = ["pg_url"]

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> str:
    return random_name("tq")


@asynccontextmanager
async def opened(url: str, schema: str, **options: Any) -> AsyncIterator[PostgresBackend]:
    async with PostgresBackend.open(url, schema=schema, **options) as b:
        yield b


def on(kind: EventKind, event: trio.Event) -> Callable[[WorkerEvent], None]:
    def cb(e: WorkerEvent) -> None:
        if e.kind is kind:
            event.set()

    return cb


@pytest.mark.parametrize("runner", ["asyncio", "thread"])
async def test_push_worker_done_with_result(pg_url: str, schema: str, runner: str) -> None:
    async with opened(pg_url, schema, runner=runner) as b:
        tid = await b.push({"n": 20})

        async def double(args: dict[str, int]) -> int:
            return args["n"] * 2

        await WorkerBuilder("w").backend(b).build(double).run(burst=True)
        task = await b.get_task(tid)
        assert task is not None
        assert (task.status, task.result, task.attempts) == (Status.DONE, 40, 1)


async def test_priority_and_run_at_order(pg_url: str, schema: str) -> None:
    clock = FakeClock()
    async with opened(pg_url, schema, clock=clock) as b:
        await b.push("low", priority=0)
        await b.push("high", priority=5)
        await b.push("later", delay=60, priority=9)
        clock.advance(1)
        await b.push("low2", priority=0)
        drv = b.driver
        got = await drv.claim(b.queue, 10, "tok", 30)
        assert [r.payload for r in got] == [b'"high"', b'"low"', b'"low2"']
        assert all(r.status is Status.QUEUED and r.attempts == 1 for r in got)
        assert await drv.claim(b.queue, 10, "tok", 30) == []
        assert await drv.next_run_at(b.queue) == pytest.approx(clock.now - 1 + 60)
        clock.advance(60)
        assert [r.payload for r in await drv.claim(b.queue, 10, "tok", 30)] == [b'"later"']


async def test_retry_persisted_then_killed(pg_url: str, schema: str) -> None:
    clock = FakeClock()
    async with opened(pg_url, schema, clock=clock) as b:
        tid = await b.push("x", max_attempts=2)
        (rec,) = await b.driver.claim(b.queue, 1, "t1", 30)
        fail = Outcome(tid, Status.FAILED, error="boom", delay=100)
        assert await b.driver.settle([fail], "t1") == [tid]
    async with opened(pg_url, schema, clock=clock) as b:  # a restart: state is stored
        task = await b.get_task(tid)
        assert task is not None
        assert (task.status, task.attempts, task.last_error) == (Status.FAILED, 1, "boom")
        assert task.run_at == datetime.fromtimestamp(clock.now + 100, UTC)
        assert await b.driver.claim(b.queue, 1, "t2", 30) == []
        clock.advance(100)
        (rec,) = await b.driver.claim(b.queue, 1, "t2", 30)
        assert rec.attempts == 2
        assert await b.driver.settle([Outcome(tid, Status.FAILED, error="again")], "t2") == [tid]
        task = await b.get_task(tid)
        assert task is not None
        assert (task.status, task.attempts, task.last_error) == (Status.KILLED, 2, "again")


async def test_worker_kills_after_max_attempts(pg_url: str, schema: str) -> None:
    async with opened(pg_url, schema) as b:
        tid = await b.push("x", max_attempts=3)
        seen: list[int] = []

        async def handler(args: str, attempt: Attempt) -> None:
            seen.append(attempt)
            raise RuntimeError("nope")

        await WorkerBuilder("w").backend(b).backoff(lambda n: 0.0).build(handler).run(burst=True)
        task = await b.get_task(tid)
        assert task is not None
        assert seen == [1, 2, 3]
        assert (task.status, task.attempts) == (Status.KILLED, 3)
        assert task.last_error == "RuntimeError: nope"


async def test_rescue_by_restarted_worker_and_stale_settle(pg_url: str, schema: str) -> None:
    clock = FakeClock()
    async with opened(pg_url, schema, clock=clock) as a:
        tid = await a.push("job")
        (_held,) = await a.driver.claim(a.queue, 1, "dead-worker", 10)
        # The process holding the lease dies here: nothing releases it.
    clock.advance(11)
    async with opened(pg_url, schema, clock=clock) as b:
        ran = []
        done = trio.Event()

        async def handler(args: str) -> str:
            ran.append(args)
            done.set()
            return "ok"

        # Same worker name as before: names play no part, the expired lease
        # does; the worker's own rescuer finds it.
        worker = WorkerBuilder("w").backend(b).poll_interval(0.05).build(handler)
        async with trio.open_nursery() as n:
            await n.start(worker.serve)
            with trio.fail_after(10):
                await done.wait()
            worker.stop()
        assert ran == ["job"]
        task = await b.get_task(tid)
        assert task is not None
        assert (task.status, task.attempts, task.result) == (Status.DONE, 2, "ok")
        late = Outcome(tid, Status.FAILED, error="stale", delay=0)
        assert await b.driver.settle([late], "dead-worker") == []
        assert (await b.driver.extend([tid], "dead-worker", 10)).held == []
        assert await b.driver.release([tid], "dead-worker") == 0
        task = await b.get_task(tid)
        assert task is not None and task.status is Status.DONE and task.result == "ok"


async def test_rescue_kills_when_out_of_attempts(pg_url: str, schema: str) -> None:
    clock = FakeClock()
    async with opened(pg_url, schema, clock=clock) as b:
        tid = await b.push("job", max_attempts=1)
        await b.driver.claim(b.queue, 1, "t", 5)
        assert await b.rescue() == 0
        clock.advance(5)
        assert await b.rescue() == 1
        task = await b.get_task(tid)
        assert task is not None and task.status is Status.KILLED
        assert task.last_error == "lease expired on attempt 1 of 1"


async def test_four_backends_never_claim_the_same_task(pg_url: str, schema: str) -> None:
    async with opened(pg_url, schema) as b0:
        ids = set(await b0.push_bulk(range(300)))
        claimed: list[list[str]] = [[], [], [], []]

        async def claimer(i: int) -> None:
            async with opened(pg_url, schema, migrate=False) as b:
                while True:
                    got = await b.driver.claim(b.queue, 7, f"tok{i}", 60)
                    if not got:
                        return
                    claimed[i].extend(r.id for r in got)

        async with trio.open_nursery() as n:
            for i in range(4):
                n.start_soon(claimer, i)
        everything = [x for c in claimed for x in c]
        assert len(everything) == len(set(everything)) == len(ids)
        assert set(everything) == ids
        assert sum(1 for c in claimed if c) >= 2  # they really competed


@pytest.mark.parametrize("runner", ["asyncio", "thread"])
async def test_notify_wakes_an_idle_worker(pg_url: str, schema: str, runner: str) -> None:
    async with opened(pg_url, schema, runner=runner) as consumer, opened(pg_url, schema) as prod:
        idle, done = trio.Event(), trio.Event()

        async def handler(args: str) -> None:
            done.set()

        worker = (
            WorkerBuilder("w")
            .backend(consumer)
            .poll_interval(30)  # only a notification explains a prompt pickup
            .on_event(on(EventKind.IDLE, idle))
            .build(handler)
        )
        async with trio.open_nursery() as n:
            await n.start(worker.serve)
            with trio.fail_after(10):
                await idle.wait()
            before = consumer.driver.notifications
            t0 = time.monotonic()
            await prod.push("wake up")
            with trio.fail_after(10):
                await done.wait()
            latency = time.monotonic() - t0
            worker.stop()
        assert consumer.driver.notifications > before
        assert latency < 5


async def test_polling_fallback(pg_url: str, schema: str) -> None:
    async with opened(pg_url, schema, listen=False) as consumer, opened(pg_url, schema) as prod:
        idle, done = trio.Event(), trio.Event()

        async def handler(args: str) -> None:
            done.set()

        worker = (
            WorkerBuilder("w")
            .backend(consumer)
            .poll_interval(0.05)
            .on_event(on(EventKind.IDLE, idle))
            .build(handler)
        )
        async with trio.open_nursery() as n:
            await n.start(worker.serve)
            with trio.fail_after(10):
                await idle.wait()
            await prod.push("polled")
            with trio.fail_after(10):
                await done.wait()
            worker.stop()
        assert consumer.driver.notifications == 0


async def test_transactional_enqueue_sync_connection(pg_url: str, schema: str) -> None:
    async with opened(pg_url, schema) as b:
        conn = await trio.to_thread.run_sync(psycopg.connect, pg_url)
        try:
            gone = await b.push_in(conn, "rolled back")
            await trio.to_thread.run_sync(conn.rollback)
            kept = await b.push_in(conn, "committed", priority=3, meta={"k": "v"})
            assert await b.get_task(kept) is None  # not visible before commit
            await trio.to_thread.run_sync(conn.commit)
        finally:
            await trio.to_thread.run_sync(conn.close)
        assert await b.get_task(gone) is None
        task = await b.get_task(kept)
        assert task is not None
        assert (task.args, task.priority, task.meta) == ("committed", 3, {"k": "v"})


@pytest.mark.parametrize("runner", ["native", "asyncio"])
async def test_transactional_enqueue_async_connection(
    pg_url: str, schema: str, runner: str
) -> None:
    # The caller's asyncio connection lives on a trio-asyncio loop: the
    # caller's own with the native runner, else the one the asyncio runner opens.
    async with AsyncExitStack() as stack:
        if runner == "native":
            await stack.enter_async_context(trio_asyncio.open_loop())
        b = await stack.enter_async_context(opened(pg_url, schema, runner=runner))
        aio = trio_asyncio.aio_as_trio
        conn = await aio(psycopg.AsyncConnection.connect)(pg_url)
        try:
            gone = await b.push_in(conn, "rolled back")
            await aio(conn.rollback)()
            kept = await b.push_in(conn, "committed")
            await aio(conn.commit)()
        finally:
            await aio(conn.close)()
        assert await b.get_task(gone) is None
        task = await b.get_task(kept)
        assert task is not None and task.status is Status.PENDING


async def test_transactional_enqueue_errors_and_row_factories(pg_url: str, schema: str) -> None:
    async with opened(pg_url, schema, runner="thread") as b:
        with pytest.raises(TypeError, match="expected a psycopg connection"):
            await b.push_in(object(), "x")  # type: ignore[arg-type]
        conn = await trio.to_thread.run_sync(partial(psycopg.connect, pg_url, row_factory=dict_row))
        try:
            kept = await b.push_in(conn, "dict rows")  # the caller's row factory is left alone
            await trio.to_thread.run_sync(conn.commit)
            with pytest.raises(psycopg.Error):
                await trio.to_thread.run_sync(conn.execute, "SELECT 1 / 0")
            with pytest.raises(PushError) as info:
                await b.push_in(conn, "in an aborted transaction")
            assert isinstance(info.value.__cause__, psycopg.errors.InFailedSqlTransaction)
            await trio.to_thread.run_sync(conn.rollback)
        finally:
            await trio.to_thread.run_sync(conn.close)
        task = await b.get_task(kept)
        assert task is not None and task.args == "dict rows"
        assert (await b.counts())[b.queue] == {Status.PENDING: 1}


async def test_every_field_round_trips(pg_url: str, schema: str) -> None:
    rec = StoredTask(
        id="all",
        queue="q",
        payload=b"\x00payload",
        status=Status.RUNNING,
        attempts=2,
        max_attempts=7,
        run_at=1_700_000_000.25,
        priority=-3,
        meta={"k": [1, "two"]},
        last_error="boom",
        result=b"\x01result",
        created_at=1_699_999_998.5,
        finished_at=1_700_000_009.5,
        lease_token="tok",
        lease_expires_at=1_700_000_030.0,
    )
    # An insert stores a new task: its outcome and lease columns keep the
    # table's defaults (see _pg_schema.INSERTED); every other field round-trips.
    fresh = replace(
        rec, last_error=None, result=None, finished_at=None, lease_token=None, lease_expires_at=None
    )
    async with opened(pg_url, schema) as b:
        assert await b.driver.insert([rec]) == 1
        assert await b.driver.insert([rec]) == 0
        got = await b.driver.get("all")
        listed = await b.driver.list_tasks(queue="q", status=Status.RUNNING, limit=5, offset=0)
    assert got is not None and asdict(got) == asdict(fresh)
    assert [asdict(t) for t in listed] == [asdict(fresh)]


async def test_terminated_connections_lose_nothing(pg_url: str, schema: str) -> None:
    total = 120
    async with opened(pg_url, schema) as b, opened(pg_url, schema) as prod:
        await prod.push_bulk(range(total))
        seen: set[int] = set()
        all_done, late_done = trio.Event(), trio.Event()
        killed: list[int] = []

        def terminate() -> int:
            with psycopg.connect(pg_url, autocommit=True) as c:
                row = c.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchone()
                return int(row[0]) if row else 0

        async def handler(n: int) -> None:
            if n == 40 and not killed:
                killed.append(await trio.to_thread.run_sync(terminate))
            seen.add(n)
            if len(seen) == total:
                all_done.set()
            if n == -1:
                late_done.set()

        worker = WorkerBuilder("w").backend(b).concurrency(5).poll_interval(30).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            with trio.fail_after(30):
                await all_done.wait()
            # The LISTEN connection came back too: a new push wakes the worker.
            with trio.fail_after(30):
                while not late_done.is_set():
                    await prod.push(-1)
                    with trio.move_on_after(2):
                        await late_done.wait()
            worker.stop()
        assert killed and killed[0] >= 2
        assert seen >= set(range(total))
        counts = await b.counts(queue=b.queue)
        assert counts[b.queue][Status.DONE] >= total + 1
        assert set(counts[b.queue]) == {Status.DONE}


async def test_cancelled_claim_returns_what_it_claimed(pg_url: str, schema: str) -> None:
    async with opened(pg_url, schema) as b:
        await b.push_bulk(["a", "b"])
        with trio.CancelScope() as scope:
            scope.cancel()
            got = await b.driver.claim(b.queue, 5, "tok", 30)
            assert len(got) == 2  # the statement ran to its end, its rows came back
            await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert await b.driver.release([r.id for r in got], "tok") == 2


async def test_admin_operations(pg_url: str, schema: str) -> None:
    clock = FakeClock()
    async with opened(pg_url, schema, clock=clock) as b:
        ids = [await b.push(i, id=f"id-{i:02d}") for i in range(5)]
        assert await b.push("dup", id="id-00") == "id-00"
        assert (await b.counts())[b.queue] == {Status.PENDING: 5}
        page = await b.list_tasks(limit=2, offset=1)
        assert [t.id for t in page] == ["id-03", "id-02"]
        assert await b.cancel_task("id-01")
        assert not await b.cancel_task("id-01")
        (rec,) = await b.driver.claim(b.queue, 1, "t", 30)
        await b.driver.settle([Outcome(rec.id, Status.KILLED, error="x")], "t")
        assert await b.retry_task(rec.id)
        task = await b.get_task(rec.id)
        assert task is not None and task.status is Status.PENDING and task.max_attempts == 25
        assert [t.id for t in await b.list_tasks(status="cancelled")] == ["id-01"]
        clock.advance(100)
        assert await b.purge(older_than=50) == 1
        assert await b.get_task("id-01") is None
        assert len(ids) == 5


async def test_migrations_idempotent_and_schema_checked(pg_url: str, schema: str) -> None:
    v1 = await migrate(pg_url, schema=schema)
    assert await migrate(pg_url, schema=schema) == v1 >= 1
    async with opened(pg_url, schema) as a, opened(pg_url, schema) as b:
        await a.push("x")
        assert (await b.counts())[b.queue] == {Status.PENDING: 1}
    for bad in ['x"; DROP TABLE y; --', "1abc", "a" * 64, ""]:
        with pytest.raises(ValueError):
            await migrate(pg_url, schema=bad)


@pytest.mark.parametrize("migrate_on_open", [True, False])
async def test_a_newer_schema_is_refused(pg_url: str, schema: str, migrate_on_open: bool) -> None:
    version = await migrate(pg_url, schema=schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (%s)', (version + 1,))
    with pytest.raises(BackendError, match="newer than this trioqueue knows"):
        async with opened(pg_url, schema, migrate=migrate_on_open):
            pass


async def test_migrate_false_refuses_a_missing_or_older_schema(pg_url: str, schema: str) -> None:
    with pytest.raises(BackendError, match="has no trioqueue tables: run `trioqueue migrate`"):
        async with opened(pg_url, schema, migrate=False):
            pass  # pragma: no cover
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".schema_version (version integer NOT NULL)')
    with pytest.raises(BackendError, match="at version 0, older than this trioqueue needs"):
        async with opened(pg_url, schema, migrate=False):
            pass  # pragma: no cover
    await migrate(pg_url, schema=schema)
    async with opened(pg_url, schema, migrate=False) as b:
        assert await b.push(1)


async def test_hostile_strings_round_trip(pg_url: str, schema: str) -> None:
    queue = "q'; DROP TABLE tasks; -- \"ü\u2603 %s %(x)s {s}"
    async with opened(pg_url, schema, queue=queue) as b:
        args = {"sql": "'); DELETE FROM tasks; --", "pct": "%s %% {}", "emoji": "🎉", "bs": "\\x"}
        meta = {"h'k\"": "v%s{}", "n": [1, None, "\u2028"]}
        tid = await b.push(args, id="id'\"%s{}\\", meta=meta, run_at=datetime.now(UTC))
        await b.push("later", delay=timedelta(hours=1).total_seconds())
        task = await b.get_task(tid)
        assert task is not None
        assert (task.id, task.queue, task.args, task.meta) == ("id'\"%s{}\\", queue, args, meta)
        assert (await b.counts(queue=queue))[queue] == {Status.PENDING: 2}


async def test_several_backends_inside_a_user_loop(pg_url: str, schema: str) -> None:
    async with trio_asyncio.open_loop() as loop:
        async with opened(pg_url, schema, queue="a") as a:
            async with opened(pg_url, schema, queue="b") as b:
                await a.push(1)
                await b.push(2)
                assert trio_asyncio.current_loop.get() is loop
        async with opened(pg_url, schema, queue="a") as a2:
            (rec,) = await a2.driver.claim("a", 5, "t", 30)
            (rec2,) = await a2.driver.claim("b", 5, "t", 30)
            assert (rec.payload, rec2.payload) == (b"1", b"2")


async def test_an_unknown_runner_is_refused(pg_url: str, schema: str) -> None:
    with pytest.raises(ValueError, match="runner must be one of"):
        async with opened(pg_url, schema, runner="bridge"):
            pass  # pragma: no cover


async def test_unreachable_server_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match=r"^cannot connect to PostgreSQL at 127\.0\.0\.1:1: "):
        async with PostgresBackend.open("postgresql://postgres@127.0.0.1:1/x", connect_timeout=2):
            pass


async def test_a_version_1_schema_opens_and_migrates(pg_url: str, schema: str) -> None:
    from psycopg import sql

    from trioqueue.backends._pg_schema import MIGRATIONS, SCHEMA_VERSION

    s = sql.Identifier(schema)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {s}").format(s=s))
        conn.execute(sql.SQL(MIGRATIONS[0]).format(s=s))  # type: ignore[arg-type]
        conn.execute(
            sql.SQL("CREATE TABLE {s}.schema_version (version integer NOT NULL)").format(s=s)
        )
        conn.execute(sql.SQL("INSERT INTO {s}.schema_version VALUES (1)").format(s=s))
        conn.execute(
            sql.SQL(
                "INSERT INTO {s}.tasks (id, queue, payload, run_at, created_at) "
                "VALUES ('old-1', 'default', %s, 0, 0)"
            ).format(s=s),
            (b'"kept"',),
        )

    async def fail(args: str) -> None:
        raise RuntimeError(f"no {args}")

    async with opened(pg_url, schema) as b:
        worker = WorkerBuilder("w").backend(b).build(fail)
        with trio.fail_after(10):
            await worker.run(burst=True)
        task = await b.get_task("old-1")
    assert task is not None and task.args == "kept"
    assert task.last_error == "RuntimeError: no kept" and task.status is Status.FAILED
    assert task.traceback is not None and "RuntimeError: no kept" in task.traceback
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT max(version) FROM {s}.schema_version").format(s=s))
        assert row.fetchone() == (SCHEMA_VERSION,)
