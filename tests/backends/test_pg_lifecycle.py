"""The PostgreSQL driver's lifecycle operations on a real server, held against the memory driver.

Snoozes, cancellations, progress, replacing pushes, retention, paused queues,
the workers' registry, the change and cancel notifications, and migration 4.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
import trio
from pg_support import FakeClock, pg_url, random_name
from psycopg import sql

from trioqueue._driver import CANCEL_REQUESTED, Outcome, StoredTask, WorkerRecord
from trioqueue._task import Status
from trioqueue.backends._pg_schema import MIGRATIONS, SCHEMA_VERSION
from trioqueue.backends._pg_statements import channel_name
from trioqueue.backends.memory import MemoryDriver
from trioqueue.backends.postgres import PostgresBackend, PostgresDriver, migrate

__all__ = ["pg_url"]

pytestmark = pytest.mark.postgres

Q = "default"
#: The fields a settle, release or rescue may change, compared with the memory driver's.
FIELDS = (
    "status",
    "attempts",
    "run_at",
    "last_error",
    "traceback",
    "result",
    "finished_at",
    "lease_token",
    "lease_expires_at",
    "started_at",
    "progress",
    "snoozes",
    "cancel_requested",
)


@pytest.fixture
def schema() -> str:
    return random_name("tq")


@asynccontextmanager
async def driver(url: str, schema: str, **options: Any) -> AsyncIterator[PostgresDriver]:
    async with PostgresBackend.open(url, schema=schema, **options) as b:
        yield b.driver


def new(id: str, *, now: float, queue: str = Q, max_attempts: int = 25) -> StoredTask:
    return StoredTask(
        id, queue, b'"x"', max_attempts=max_attempts, run_at=now, created_at=now, meta={"k": 1}
    )


def fields(rec: StoredTask | None) -> dict[str, Any]:
    assert rec is not None
    return {f: getattr(rec, f) for f in FIELDS}


async def returns_within(seconds: float, fn: Callable[[], Awaitable[None]]) -> float:
    """Run ``fn`` and return how long it took, failing if it takes ``seconds`` or more."""
    start = time.monotonic()
    with trio.fail_after(seconds):
        await fn()
    return time.monotonic() - start


# -- the settle rules, held against the memory driver --

OUTCOMES = [
    Outcome("t", Status.DONE, result=b"42", started_at=1000.5, progress='{"p":1}'),
    Outcome("t", Status.DONE, result=b"42", error="result not stored"),
    Outcome("t", Status.FAILED, error="E: x", delay=5.0, traceback="tb"),
    Outcome("t", Status.KILLED, error="Abort: no"),
    Outcome("t", Status.CANCELLED, error="Cancelled: by the handler"),
    Outcome("t", Status.CANCELLED),
    Outcome("t", Status.PENDING, delay=7.5, progress="[1, 2]"),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: f"{o.status.value}")
@pytest.mark.parametrize("cancelled", [False, True], ids=["plain", "cancel-requested"])
@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_settle_writes_what_the_memory_driver_writes(
    pg_url: str, schema: str, outcome: Outcome, cancelled: bool, max_attempts: int
) -> None:
    clock = FakeClock(1_000_000.0)
    got = []
    async with driver(pg_url, schema, clock=clock) as pg:
        mem = MemoryDriver(clock=clock)
        both: tuple[Any, ...] = (mem, pg)
        for d in both:
            await d.insert([new("t", now=clock.now, max_attempts=max_attempts)])
            (claimed,) = await d.claim(Q, 1, "tok", 30, worker="w1")
            assert claimed.worker == "w1"
            await d.start(["t"], "tok")
            if cancelled:
                assert await d.cancel("t")
            assert await d.settle([outcome], "tok") == ["t"]
            assert await d.settle([outcome], "tok") == []  # the lease is gone
            got.append(fields(await d.get("t")))
    assert got[1] == got[0]
    if cancelled:
        assert got[1]["status"] is Status.CANCELLED
        assert got[1]["last_error"] == (outcome.error or CANCEL_REQUESTED)


@pytest.mark.parametrize("how", ["release", "rescue"])
@pytest.mark.parametrize("cancelled", [False, True], ids=["plain", "cancel-requested"])
async def test_release_and_rescue_write_what_the_memory_driver_writes(
    pg_url: str, schema: str, how: str, cancelled: bool
) -> None:
    clocks = FakeClock(1_000_000.0), FakeClock(1_000_000.0)
    got = []
    async with driver(pg_url, schema, clock=clocks[1]) as pg:
        mem = MemoryDriver(clock=clocks[0])
        both: tuple[Any, ...] = (mem, pg)
        for d, clock in zip(both, clocks, strict=True):
            await d.insert([new("t", now=clock.now)])
            await d.claim(Q, 1, "tok", 30)
            if cancelled:
                assert await d.cancel("t")
            if how == "release":
                assert await d.release(["t"], "tok") == 1
            else:
                clock.advance(31)
                assert await d.rescue(None) == 1
            got.append(fields(await d.get("t")))
    assert got[1] == got[0]
    assert (got[1]["status"] is Status.CANCELLED) is cancelled


async def test_start_stamps_and_extend_stores_progress_and_flags_cancels(
    pg_url: str, schema: str
) -> None:
    clock = FakeClock(1_000_000.0)
    async with driver(pg_url, schema, clock=clock) as d:
        await d.insert([new(i, now=clock.now) for i in ("a", "b", "c")])
        assert len(await d.claim(Q, 3, "tok", 30, worker="")) == 3
        assert (await d.get("a")).worker is None  # type: ignore[union-attr]
        clock.advance(1)
        await d.start(["a", "b"], "tok")
        a = await d.get("a")
        assert a is not None and (a.status, a.started_at) == (Status.RUNNING, clock.now)
        assert await d.cancel("b")
        ext = await d.extend(["a", "b", "c", "gone"], "tok", 60, {"a": '{"n":1}', "gone": "2"})
        assert (ext.held, ext.cancel) == (["a", "b", "c"], ["b"])
        recs = {r.id: r for r in await d.get_many(["c", "a"])}
        assert recs["a"].progress == '{"n":1}' and recs["c"].progress is None
        assert recs["a"].lease_expires_at == clock.now + 60
        ext = await d.extend(["a", "b"], "other", 60)
        assert (ext.held, ext.cancel) == ([], [])
        ext = await d.extend(["a", "b"], "tok", 60)  # no progress: the lean statement
        assert (ext.held, ext.cancel) == (["a", "b"], ["b"])


async def test_cancel_pending_at_once_claimed_flagged_final_refused(
    pg_url: str, schema: str
) -> None:
    clock = FakeClock(1_000_000.0)
    async with driver(pg_url, schema, clock=clock) as d:
        await d.insert([new("p", now=clock.now), new("q", now=clock.now + 100)])
        await d.claim(Q, 1, "tok", 30)  # p
        assert await d.cancel("q")
        q = await d.get("q")
        assert q is not None and (q.status, q.finished_at) == (Status.CANCELLED, clock.now)
        assert not await d.cancel("q")
        assert not await d.cancel("missing")
        assert await d.cancel("p")
        p = await d.get("p")
        assert p is not None and (p.status, p.cancel_requested) == (Status.QUEUED, True)


async def test_replace_overwrites_only_final_tasks_in_any_queue(pg_url: str, schema: str) -> None:
    clock = FakeClock(1_000_000.0)
    async with driver(pg_url, schema, clock=clock) as d:
        await d.insert([new("done", now=clock.now, queue="old"), new("busy", now=clock.now)])
        await d.claim("old", 1, "tok", 30)
        await d.settle([Outcome("done", Status.DONE, result=b"1", progress="3")], "tok")
        fresh = [new(i, now=clock.now + 5, queue="new") for i in ("done", "busy", "other", "done")]
        fresh[3].priority = 9  # a second record of an id is skipped
        assert await d.replace(fresh) == 2
        done = await d.get("done")
        assert done is not None
        assert (done.queue, done.status, done.result, done.progress, done.finished_at) == (
            "new",
            Status.PENDING,
            None,
            None,
            None,
        )
        assert (done.priority, done.meta, done.attempts, done.run_at) == (
            0,
            {"k": 1},
            0,
            clock.now + 5,
        )
        busy = await d.get("busy")
        assert busy is not None and busy.queue == Q
        assert [r.id for r in await d.get_many(["other", "nope", "busy"])] == ["other", "busy"]
        assert await d.get_many([]) == []


async def test_prune_deletes_in_bounded_batches_per_status(pg_url: str, schema: str) -> None:
    clock = FakeClock(1_000_000.0)
    async with driver(pg_url, schema, clock=clock) as d:
        await d.insert([new(f"d{i}", now=clock.now) for i in range(5)] + [new("k", now=clock.now)])
        await d.claim(Q, 6, "tok", 30)
        await d.insert([new("c", now=clock.now), new("live", now=clock.now)])
        await d.claim(Q, 1, "tok", 30)  # c: flagged, then released as CANCELLED
        assert await d.cancel("c")
        assert await d.release(["c"], "tok") == 1
        await d.claim(Q, 1, "tok", 30)  # live
        await d.settle([Outcome(f"d{i}", Status.DONE) for i in range(5)], "tok")
        await d.settle([Outcome("k", Status.KILLED, error="x")], "tok")
        finished = clock.now
        for name, seen in (("old", finished - 100), ("new", finished)):
            clock.now = seen
            await d.register_worker(WorkerRecord(name, "h", 1, Q, 2, 0, seen))
        clock.now = finished + 10
        before = {Status.DONE: finished + 1, Status.KILLED: finished - 1}
        assert await d.prune(None, before, 2, workers_before=finished - 50) == 2
        assert [w.name for w in await d.workers(0)] == ["new"]
        assert await d.prune(None, before, 2, workers_before=0) == 2
        assert await d.prune(None, before, 2, workers_before=0) == 1
        assert await d.prune(None, before, 2, workers_before=0) == 0
        left = await d.counts(None)
        assert left == {Q: {Status.KILLED: 1, Status.CANCELLED: 1, Status.QUEUED: 1}}
        assert await d.prune(None, {Status.QUEUED: finished + 100}, 10, workers_before=0) == 0
        assert await d.prune(None, {}, 10, workers_before=0) == 0


async def test_pause_stops_claims_and_resume_wakes_a_consumer_elsewhere(
    pg_url: str, schema: str
) -> None:
    async with driver(pg_url, schema) as d, driver(pg_url, schema) as admin:
        await d.insert([new("t", now=d.now())])
        await admin.pause(Q)
        await admin.pause(Q)
        await admin.pause("b")
        assert await d.paused() == ["b", Q]
        assert await d.claim(Q, 5, "tok", 30) == []
        assert await d.next_run_at(Q) is None
        # The consumer listens (its claim did); wait as it does, resume from elsewhere.
        async with trio.open_nursery() as nursery:

            async def resume() -> None:
                await admin.resume(Q)

            async def wait() -> None:
                await d.wait_for_tasks(Q, 60)

            nursery.start_soon(resume)
            took = await returns_within(5, wait)
        assert took < 5
        assert await d.paused() == ["b"]
        assert await d.next_run_at(Q) is not None
        assert [r.id for r in await d.claim(Q, 5, "tok", 30)] == ["t"]


async def test_workers_register_refresh_expire_and_leave(pg_url: str, schema: str) -> None:
    clock = FakeClock(1_000_000.0)
    async with driver(pg_url, schema, clock=clock) as d:
        w = WorkerRecord("w1", "host", 4242, Q, 8, 1, clock.now - 5)
        await d.register_worker(w)
        clock.advance(3)
        await d.register_worker(WorkerRecord("w1", "host", 4242, Q, 8, 3, w.started_at))
        await d.register_worker(WorkerRecord("w0", "h2", 7, "other", 1, 0, clock.now))
        (w0, w1) = await d.workers(clock.now - 10)
        assert w0.name == "w0"
        assert (w1.running, w1.last_seen, w1.started_at, w1.pid) == (
            3,
            clock.now,
            w.started_at,
            4242,
        )
        assert await d.workers(clock.now) == []
        await d.remove_worker("w1")
        await d.remove_worker("nobody")
        assert [x.name for x in await d.workers(0)] == ["w0"]


# -- notifications --


async def _settle_from(other: PostgresDriver, ids: list[str], status: Status) -> None:
    await other.claim(Q, len(ids), "tok", 30)
    assert await other.settle([Outcome(i, status, error="e") for i in ids], "tok") == ids


async def test_wait_for_change_is_woken_by_another_backend(pg_url: str, schema: str) -> None:
    async with driver(pg_url, schema) as waiter, driver(pg_url, schema) as other:
        # The first wait starts listening and returns once it does (a change
        # made before then was not heard).
        assert await returns_within(10, lambda: waiter.wait_for_change(60)) < 10
        long_ids = [f"{'x' * 200}{i:03}" for i in range(60)]  # too many for one payload
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("settle", lambda: _settle_from(other, ["s1"], Status.DONE)),
            ("cancel", lambda: other.cancel("c1")),
            ("flag", lambda: other.cancel("f1")),
            ("progress", lambda: other.extend(["f1"], "ftok", 30, {"f1": "0.5"})),
            ("many", lambda: _settle_from(other, long_ids, Status.KILLED)),
        ]
        await other.insert([new("f1", now=other.now())])
        await other.claim(Q, 1, "ftok", 30)
        for name, change in cases:
            if name == "settle":
                await other.insert([new("s1", now=other.now())])
            elif name == "cancel":
                await other.insert([new("c1", now=other.now() + 100)])
            elif name == "many":
                await other.insert([new(i, now=other.now()) for i in long_ids])
            before = waiter.notifications
            async with trio.open_nursery() as nursery:
                nursery.start_soon(change)
                took = await returns_within(5, lambda: waiter.wait_for_change(60))
            assert took < 5, name
            assert waiter.notifications > before, name


async def test_wait_for_cancel_is_woken_at_once_by_another_backend(
    pg_url: str, schema: str
) -> None:
    async with driver(pg_url, schema) as worker, driver(pg_url, schema) as admin:
        await admin.insert([new("t", now=admin.now()), new("u", now=admin.now())])
        await worker.claim(Q, 2, "tok", 30)
        assert await returns_within(10, lambda: worker.wait_for_cancel(60)) < 10  # listens
        took = []
        for id in ("t", "u"):
            async with trio.open_nursery() as nursery:

                async def cancel(id: str = id) -> None:
                    assert await admin.cancel(id)

                nursery.start_soon(cancel)
                took.append(await returns_within(5, lambda: worker.wait_for_cancel(60)))
            ext = await worker.extend(["t", "u"], "tok", 30)
            assert id in ext.cancel
        assert max(took) < 0.5
        # A pending task's cancellation is no worker's business: no cancel signal.
        await admin.insert([new("p", now=admin.now() + 100)])
        with trio.move_on_after(0.3) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(admin.cancel, "p")
                await worker.wait_for_cancel(60)
        assert scope.cancelled_caught


async def test_batch_writes_past_one_payload_wake_workers_and_waiters_at_once(
    pg_url: str, schema: str
) -> None:
    # 60 ids of 200 bytes: more than one NOTIFY's 8,000 bytes, in each batch.
    async with driver(pg_url, schema) as worker, driver(pg_url, schema) as admin:
        held = [f"{'h' * 200}{i:03}" for i in range(60)]
        idle = [f"{'i' * 200}{i:03}" for i in range(60)]
        await admin.insert([new(i, now=admin.now()) for i in held])
        await admin.insert([new(i, now=admin.now() + 100) for i in idle])
        assert len(await worker.claim(Q, 60, "tok", 30)) == 60
        assert await returns_within(10, lambda: worker.wait_for_cancel(60)) < 10  # listens
        assert await returns_within(10, lambda: worker.wait_for_change(60)) < 10
        async with trio.open_nursery() as nursery:

            async def cancel() -> None:
                assert await admin.cancel_many(held + idle) == 120

            nursery.start_soon(cancel)
            took = await returns_within(5, lambda: worker.wait_for_cancel(60))
        assert took < 0.5
        assert sorted((await worker.extend(held, "tok", 30)).cancel) == sorted(held)
        failed = [f"{'f' * 200}{i:03}" for i in range(60)]
        await admin.insert([new(i, now=admin.now()) for i in failed])
        assert len(await worker.claim(Q, 60, "tok2", 30)) == 60
        await worker.settle([Outcome(i, Status.KILLED, error="k") for i in failed], "tok2")
        writes: list[Callable[[], Awaitable[int]]] = [
            lambda: admin.retry_many(failed),
            lambda: admin.delete(idle),
        ]
        for write in writes:
            async with trio.open_nursery() as nursery:

                async def run(write: Callable[[], Awaitable[int]] = write) -> None:
                    assert await write() == 60

                nursery.start_soon(run)
                assert await returns_within(5, lambda: worker.wait_for_change(60)) < 5


async def _listen_connections(url: str, app: str) -> list[tuple[Any, ...]]:
    def read() -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND query LIKE 'LISTEN%%'",
                [app],
            ).fetchall()

    return await trio.to_thread.run_sync(read)


async def test_one_listen_connection_started_lazily_and_shared(pg_url: str, schema: str) -> None:
    app = random_name("lazy")
    async with driver(f"{pg_url}?application_name={app}", schema) as d:
        await d.insert([new("t", now=d.now())])
        await d.cancel("t")
        assert await _listen_connections(pg_url, app) == []  # pushing never listens
        await d.wait_for_change(10)
        (first,) = await _listen_connections(pg_url, app)
        await d.wait_for_cancel(0.01)  # listened to already: nothing to wait for
        await d.claim(Q, 1, "tok", 30)
        await d.wait_for_tasks(Q, 0.01)
        assert await _listen_connections(pg_url, app) == [first]
        assert "listened=3" in repr(d._listener)


async def test_a_long_schema_name_keeps_its_channels_within_63_bytes(pg_url: str) -> None:
    schema = random_name("s" * 50)[:63]
    assert len(channel_name(schema, "change")) <= 63
    assert channel_name(schema) != channel_name(schema, "change")
    assert channel_name("tq") == "trioqueue.tq"
    async with driver(pg_url, schema) as d, driver(pg_url, schema) as other:
        await d.wait_for_change(10)
        await other.insert([new("t", now=other.now())])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_settle_from, other, ["t"], Status.DONE)
            assert await returns_within(5, lambda: d.wait_for_change(60)) < 5


# -- migration 4 --


def _make_version_3(url: str, schema: str) -> None:
    s = sql.Identifier(schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {s}").format(s=s))
        conn.execute(
            sql.SQL("CREATE TABLE {s}.schema_version (version integer NOT NULL)").format(s=s)
        )
        for n, body in enumerate(MIGRATIONS[:3], start=1):
            conn.execute(sql.SQL(body).format(s=s))
            conn.execute(sql.SQL("INSERT INTO {s}.schema_version VALUES (%s)").format(s=s), [n])
        conn.execute(
            sql.SQL(
                "INSERT INTO {s}.tasks (id, queue, payload, status, attempts, run_at, created_at,"
                " last_error) VALUES ('old', 'default', '\"x\"', 'failed', 1, 0, 1, 'E: x'),"
                " ('gone', 'default', '\"y\"', 'done', 1, 0, 1, NULL)"
            ).format(s=s)
        )


async def test_a_version_3_schema_migrates_and_keeps_its_tasks(pg_url: str, schema: str) -> None:
    assert SCHEMA_VERSION >= 4
    await trio.to_thread.run_sync(_make_version_3, pg_url, schema)
    assert await migrate(pg_url, schema=schema) == SCHEMA_VERSION
    assert await migrate(pg_url, schema=schema) == SCHEMA_VERSION
    async with driver(pg_url, schema, migrate=False) as d:
        old = await d.get("old")
        assert old is not None
        assert (old.status, old.attempts, old.last_error, old.payload) == (
            Status.FAILED,
            1,
            "E: x",
            b'"x"',
        )
        assert (old.started_at, old.worker, old.progress, old.snoozes, old.cancel_requested) == (
            None,
            None,
            None,
            0,
            False,
        )
        (claimed,) = await d.claim(Q, 5, "tok", 30, worker="w")
        assert (claimed.id, claimed.attempts, claimed.worker) == ("old", 2, "w")
        await d.pause(Q)
        assert await d.paused() == [Q]
        assert await d.replace([new("gone", now=d.now())]) == 1


@pytest.mark.parametrize("runner", ["asyncio", "thread"])
async def test_the_other_runners_add_channels_and_hear_changes(
    pg_url: str, schema: str, runner: str
) -> None:
    async with driver(pg_url, schema, runner=runner) as d, driver(pg_url, schema) as other:
        await d.wait_for_tasks(Q, 10)  # listens on the wake-up channel first
        assert await returns_within(10, lambda: d.wait_for_change(60)) < 10  # then joins
        await other.insert([new("t", now=other.now())])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_settle_from, other, ["t"], Status.DONE)
            assert await returns_within(5, lambda: d.wait_for_change(60)) < 5
        await other.insert([new("u", now=other.now())])
        await other.claim(Q, 1, "tok", 30)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other.cancel, "u")
            assert await returns_within(5, lambda: d.wait_for_cancel(60)) < 5
