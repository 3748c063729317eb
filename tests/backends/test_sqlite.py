"""The SQLite backend on real files: the driver semantics, durability, several connections."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import trioqueue as tq
from trioqueue import Outcome, Status, StoredTask, WorkerBuilder, WorkerContext
from trioqueue.backends.sqlite import SCHEMA_VERSION, SqliteBackend, SqliteDriver

T0 = 1_700_000_000.0


class ManualClock:
    """POSIX seconds that move only when told."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tasks.db")


@asynccontextmanager
async def opened(
    db: str, clock: Callable[[], float] | None = None, **options: Any
) -> AsyncIterator[SqliteBackend]:
    async with SqliteBackend.open(f"sqlite:///{db}", clock=clock, **options) as backend:
        yield backend


async def task(backend: tq.Backend, id: str) -> tq.Task[Any]:
    t = await backend.get_task(id)
    assert t is not None
    return t


def record(id: str, *, queue: str = "default", **fields: Any) -> StoredTask:
    fields.setdefault("run_at", T0)
    fields.setdefault("created_at", T0)
    return StoredTask(id=id, queue=queue, payload=b'"x"', **fields)


# -- the life of a task --


async def test_push_worker_done_with_result(db: str) -> None:
    async with opened(db) as backend:
        ids = await backend.push_bulk([1, 2, 3])

        async def double(x: int) -> int:
            return x * 2

        await WorkerBuilder("w").backend(backend).build(double).run(burst=True)
        for id, x in zip(ids, [1, 2, 3], strict=True):
            t = await task(backend, id)
            assert (t.status, t.result, t.attempts) == (Status.DONE, x * 2, 1)
        assert await backend.counts() == {"default": {Status.DONE: 3}}


async def test_priority_then_run_at_order(db: str, clock: ManualClock) -> None:
    async with opened(db, clock) as backend:
        await backend.push("late", delay=10)
        await backend.push("low-1")
        clock.advance(1)
        await backend.push("low-2")
        await backend.push("high", priority=5)
        ran: list[str] = []

        async def handler(name: str) -> None:
            ran.append(name)

        worker = WorkerBuilder("w").backend(backend).concurrency(1).prefetch(1).build(handler)
        await worker.run(burst=True)
        assert ran == ["high", "low-1", "low-2"]
        clock.advance(9)
        await WorkerBuilder("w").backend(backend).build(handler).run(burst=True)
        assert ran[-1] == "late"


async def test_claim_returns_claim_order_with_leases(db: str, clock: ManualClock) -> None:
    driver = await SqliteDriver.connect(db, clock=clock)
    try:
        await driver.insert(
            [
                record("a", priority=0, run_at=T0 - 5),
                record("b", priority=1, run_at=T0),
                record("c", priority=0, run_at=T0 - 9),
                record("d", priority=9, run_at=T0 + 1),  # not ready yet
                record("e", queue="other", priority=99),
            ]
        )
        got = await driver.claim("default", 10, "tok", 30.0)
        assert [t.id for t in got] == ["b", "c", "a"]
        assert {(t.status, t.attempts, t.lease_token, t.lease_expires_at) for t in got} == {
            (Status.QUEUED, 1, "tok", T0 + 30.0)
        }
        assert await driver.claim("default", 10, "tok", 30.0) == []
        assert await driver.next_run_at("default") == T0 + 1
    finally:
        await driver.aclose()


async def test_failed_attempt_is_persisted_then_retried(db: str, clock: ManualClock) -> None:
    calls: list[int] = []

    async def flaky(x: int, attempt: tq.Attempt) -> str:
        calls.append(attempt)
        if attempt == 1:
            raise RuntimeError("boom")
        return "ok"

    async with opened(db, clock) as backend:
        id = await backend.push(1)
        await (
            WorkerBuilder("w").backend(backend).backoff(lambda n: 5.0).build(flaky).run(burst=True)
        )
    async with opened(db, clock) as backend:  # a new connection sees the recorded attempt
        t = await task(backend, id)
        assert (t.status, t.attempts, t.last_error) == (Status.FAILED, 1, "RuntimeError: boom")
        assert t.run_at is not None and t.run_at.timestamp() == pytest.approx(T0 + 5)
        clock.advance(5)
        await WorkerBuilder("w").backend(backend).build(flaky).run(burst=True)
        t = await task(backend, id)
        assert (t.status, t.attempts, t.result) == (Status.DONE, 2, "ok")
    assert calls == [1, 2]


async def test_max_attempts_ends_killed(db: str) -> None:
    async def always_fails(x: int) -> None:
        raise ValueError("nope")

    async with opened(db) as backend:
        id = await backend.push(1, max_attempts=3)
        await (
            WorkerBuilder("w")
            .backend(backend)
            .backoff(lambda n: 0.0)
            .build(always_fails)
            .run(burst=True)
        )
        t = await task(backend, id)
        assert (t.status, t.attempts, t.last_error) == (Status.KILLED, 3, "ValueError: nope")


# -- leases --


async def test_expired_lease_is_rescued_and_stale_settle_refused(
    db: str, clock: ManualClock
) -> None:
    first = await SqliteDriver.connect(db, clock=clock)
    second = await SqliteDriver.connect(db, clock=clock)
    try:
        await first.insert([record("t1", max_attempts=5), record("t2", max_attempts=1)])
        assert len(await first.claim("default", 10, "dead", 30.0)) == 2
        clock.advance(29)
        assert await second.rescue("default") == 0  # not expired yet
        clock.advance(1)
        assert await second.rescue(None) == 2
        t1, t2 = await second.get("t1"), await second.get("t2")
        assert t1 is not None and t2 is not None
        assert (t1.status, t1.attempts, t1.lease_token, t1.run_at) == (
            Status.FAILED,
            1,
            None,
            clock.now,
        )
        assert t1.last_error == "lease expired on attempt 1"
        assert (t2.status, t2.last_error) == (Status.KILLED, "lease expired on attempt 1 of 1")

        [again] = await second.claim("default", 10, "alive", 30.0)
        assert (again.id, again.attempts) == ("t1", 2)
        # The worker that lost its lease can neither extend nor settle.
        assert (await first.extend(["t1"], "dead", 30.0)).held == []
        assert await first.settle([Outcome("t1", Status.DONE, result=b"1")], "dead") == []
        assert await first.release(["t1"], "dead") == 0
        assert (await second.extend(["t1"], "alive", 60.0)).held == ["t1"]
        assert await second.settle([Outcome("t1", Status.DONE, result=b"2")], "alive") == ["t1"]
        # Settled once: a second settle is refused, even with the right token.
        assert await second.settle([Outcome("t1", Status.KILLED, error="x")], "alive") == []
        t1 = await first.get("t1")
        assert t1 is not None and (t1.status, t1.result) == (Status.DONE, b"2")
    finally:
        await first.aclose()
        await second.aclose()


async def test_start_settle_release_batches(db: str, clock: ManualClock) -> None:
    driver = await SqliteDriver.connect(db, clock=clock)
    try:
        await driver.insert([record(f"t{i}", max_attempts=1 if i == 2 else 25) for i in range(5)])
        assert await driver.insert([record("t0"), record("new")]) == 1  # idempotent ids
        claimed = await driver.claim("default", 5, "tok", 30.0)
        assert len(claimed) == 5
        await driver.start([tq.TaskId("t0"), "t1", "t2"], "tok")  # TaskId is a str
        await driver.start(["t3"], "other-token")
        clock.advance(2)
        applied = await driver.settle(
            [
                Outcome("t0", Status.DONE, result=b"r"),
                Outcome("t1", Status.FAILED, error="e1", delay=7.0),
                Outcome("t2", Status.FAILED, error="e2", delay=7.0),  # out of attempts
            ],
            "tok",
        )
        assert sorted(applied) == ["t0", "t1", "t2"]
        assert await driver.release(["t3", "t4", "new"], "tok") == 2
        got = {id: await driver.get(id) for id in ("t0", "t1", "t2", "t3")}
        assert all(t is not None for t in got.values())
        t0, t1, t2, t3 = (got[k] for k in ("t0", "t1", "t2", "t3"))
        assert t0 and (t0.status, t0.result, t0.finished_at) == (Status.DONE, b"r", T0 + 2)
        assert t1 and (t1.status, t1.run_at, t1.last_error) == (Status.FAILED, T0 + 9, "e1")
        assert t2 and (t2.status, t2.last_error, t2.finished_at) == (Status.KILLED, "e2", T0 + 2)
        assert t3 and (t3.status, t3.attempts, t3.lease_token) == (Status.PENDING, 0, None)
    finally:
        await driver.aclose()


async def test_shutdown_releases_prefetched_tasks(db: str) -> None:
    async with opened(db) as backend:
        await backend.push_bulk(range(10))
        ran: list[int] = []

        async def stop_after_one(x: int, ctx: WorkerContext) -> None:
            ran.append(x)
            ctx.stop()

        worker = WorkerBuilder("w").backend(backend).concurrency(1).prefetch(5)
        await worker.build(stop_after_one).run()
        assert len(ran) == 1
        assert await backend.counts() == {"default": {Status.DONE: 1, Status.PENDING: 9}}
        for rec in await backend.driver.list_tasks(
            queue=None, status=Status.PENDING, limit=100, offset=0
        ):
            assert (rec.attempts, rec.lease_token, rec.lease_expires_at) == (0, None, None)


# -- several connections on one file --


async def test_two_connections_never_claim_the_same_task(db: str) -> None:
    one = await SqliteDriver.connect(db)
    two = await SqliteDriver.connect(db)
    try:
        await one.insert([record(f"t{i:04d}", run_at=0.0) for i in range(600)])
        claimed: dict[str, list[str]] = {"one": [], "two": []}

        async def claimer(name: str, driver: SqliteDriver) -> None:
            while recs := await driver.claim("default", 7, name, 30.0):
                claimed[name].extend(r.id for r in recs)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(claimer, "one", one)
            nursery.start_soon(claimer, "two", two)
        everything = claimed["one"] + claimed["two"]
        assert len(everything) == len(set(everything)) == 600
        assert claimed["one"] and claimed["two"]
    finally:
        await one.aclose()
        await two.aclose()


async def test_two_backends_on_one_file_run_each_task_once(db: str) -> None:
    runs: list[tuple[str, int]] = []
    async with opened(db) as first, opened(db) as second:
        await first.push_bulk(range(300))

        def handler_for(name: str) -> Callable[[int], Any]:
            async def handler(x: int) -> None:
                runs.append((name, x))
                await trio.lowlevel.checkpoint()

            return handler

        async with trio.open_nursery() as nursery:
            for name, backend in (("a", first), ("b", second)):
                worker = WorkerBuilder(name).backend(backend).concurrency(8)
                nursery.start_soon(partial(worker.build(handler_for(name)).run, burst=True))
        assert sorted(x for _, x in runs) == list(range(300))
        assert await second.counts() == {"default": {Status.DONE: 300}}


async def test_wait_for_tasks_wakes_on_another_connections_push(db: str) -> None:
    waiter = await SqliteDriver.connect(db)
    pusher = await SqliteDriver.connect(db)
    try:
        assert await waiter.claim("default", 1, "tok", 30.0) == []
        t0 = trio.current_time()
        await waiter.wait_for_tasks("default", 0.05)  # nothing: times out
        assert trio.current_time() - t0 >= 0.05
        woke_after: list[float] = []

        async def wait() -> None:
            t = trio.current_time()
            await waiter.wait_for_tasks("default", 30.0)
            woke_after.append(trio.current_time() - t)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked(0.02)
            await pusher.insert([record("t1")])
        assert woke_after[0] < 2.0
        assert [t.id for t in await waiter.claim("default", 1, "tok", 30.0)] == ["t1"]
    finally:
        await waiter.aclose()
        await pusher.aclose()


# -- the file and its schema --


async def test_schema_created_and_tasks_kept_across_reopen(db: str) -> None:
    async with opened(db) as backend:
        id = await backend.push({"hello": "world"}, priority=3, meta={"k": [1, 2]})
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT version FROM trioqueue_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    async with opened(db) as backend:  # migrations are idempotent
        t = await task(backend, id)
        assert (t.args, t.priority, t.meta, t.status) == (
            {"hello": "world"},
            3,
            {"k": [1, 2]},
            Status.PENDING,
        )


# The statements of schema version 1 as they shipped: a file they made must open.
_VERSION_1 = (
    """CREATE TABLE trioqueue_tasks (
        id TEXT PRIMARY KEY NOT NULL, queue TEXT NOT NULL, payload BLOB NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 25, run_at REAL NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0, meta TEXT NOT NULL DEFAULT '{}',
        last_error TEXT, result BLOB, created_at REAL NOT NULL, finished_at REAL,
        lease_token TEXT, lease_expires_at REAL)""",
    """CREATE INDEX trioqueue_tasks_claim ON trioqueue_tasks (queue, priority DESC, run_at, id)
        WHERE status IN ('pending', 'failed')""",
    """CREATE INDEX trioqueue_tasks_schedule ON trioqueue_tasks (queue, run_at)
        WHERE status IN ('pending', 'failed')""",
    """CREATE INDEX trioqueue_tasks_lease ON trioqueue_tasks (lease_expires_at)
        WHERE status IN ('queued', 'running')""",
    """CREATE INDEX trioqueue_tasks_finished ON trioqueue_tasks (finished_at)
        WHERE status IN ('done', 'killed', 'cancelled')""",
)


def _schema_of(path: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name LIKE 'trioqueue_tasks%' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    return [
        (name, " ".join(sql.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").split()))
        for name, sql in rows
    ]


async def test_a_version_1_file_opens_and_migrates(tmp_path: Path) -> None:
    old, new = str(tmp_path / "old.db"), str(tmp_path / "new.db")
    conn = sqlite3.connect(old, isolation_level=None)
    for statement in _VERSION_1:
        conn.execute(statement)
    conn.execute("CREATE TABLE trioqueue_schema (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO trioqueue_schema (version) VALUES (1)")
    conn.execute(
        "INSERT INTO trioqueue_tasks (id, queue, payload, status, run_at, meta, created_at) "
        "VALUES ('old-1', 'default', ?, 'pending', ?, '{\"k\": 1}', ?)",
        (b'"kept"', T0, T0),
    )
    conn.close()
    async with opened(old) as backend:
        t = await task(backend, "old-1")
        assert (t.args, t.meta, t.status) == ("kept", {"k": 1}, Status.PENDING)
    async with opened(new):
        pass
    assert _schema_of(old) == _schema_of(new)  # migrated as a new file is made


async def test_every_field_round_trips(db: str) -> None:
    rec = StoredTask(
        id="all",
        queue="q",
        payload=b"\x00payload",
        status=Status.RUNNING,
        attempts=2,
        max_attempts=7,
        run_at=T0 + 0.25,
        priority=-3,
        meta={"k": [1, "two"]},
        last_error="boom",
        result=b"\x01result",
        created_at=T0 - 1.5,
        finished_at=T0 + 9.5,
        lease_token="tok",
        lease_expires_at=T0 + 30.0,
    )
    drv = await SqliteDriver.connect(db)
    try:
        assert await drv.insert([rec]) == 1
        got = await drv.get("all")
        listed = await drv.list_tasks(queue="q", status=Status.RUNNING, limit=5, offset=0)
    finally:
        await drv.aclose()
    assert got is not None and asdict(got) == asdict(rec)
    assert [asdict(t) for t in listed] == [asdict(rec)]


@pytest.mark.parametrize("migrate_on_open", [True, False])
async def test_newer_schema_is_refused(db: str, migrate_on_open: bool) -> None:
    async with opened(db):
        pass
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE trioqueue_schema SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(tq.BackendError, match="newer"):
        async with opened(db, migrate=migrate_on_open):
            pass  # pragma: no cover


async def test_migrate_false_refuses_an_empty_file(db: str) -> None:
    with pytest.raises(tq.BackendError, match="migrate=True"):
        async with opened(db, migrate=False):
            pass  # pragma: no cover


async def test_unopenable_paths_raise_backend_error(tmp_path: Path) -> None:
    with pytest.raises(tq.BackendError, match="cannot open") as info:
        async with SqliteBackend.open(str(tmp_path / "missing-dir" / "x.db")):
            pass  # pragma: no cover
    assert isinstance(info.value.__cause__, sqlite3.Error)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(tq.BackendError) as info:
        async with SqliteBackend.open(str(garbage)):
            pass  # pragma: no cover
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with tq.open_backend("sqlite:///rel.db", queue="q") as backend:
        await backend.push(1)
    assert (tmp_path / "rel.db").exists()
    absolute = tmp_path / "sub dir" / "abs.db"
    absolute.parent.mkdir()
    async with tq.open_backend(f"sqlite:///{absolute}?busy_timeout=1&synchronous=full") as b:
        await b.push(1)
    assert absolute.exists()
    with pytest.raises(ValueError, match="no host"):
        async with tq.open_backend("sqlite://host/x.db"):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="unknown SQLite URL options"):
        async with tq.open_backend("sqlite:///rel.db?colour=blue"):
            pass  # pragma: no cover


async def test_closed_driver_raises_backend_closed(db: str) -> None:
    driver = await SqliteDriver.connect(db)
    await driver.aclose()
    with pytest.raises(tq.BackendClosed):
        await driver.claim("default", 1, "tok", 30.0)


# -- hostile input and administration --

HOSTILE = [
    "q'; DROP TABLE trioqueue_tasks; --",
    'x" OR 1=1 --',
    "\\'\\\"%_*?[]{}();",
    "ünïcødé ☃ 🚀 \u202e",
]


async def test_hostile_strings_round_trip(db: str) -> None:
    long = "L" * 100_000
    seen: list[tuple[str, dict[str, Any]]] = []

    async def echo(arg: str, t: tq.Task[str]) -> str:
        seen.append((arg, dict(t.meta)))
        return arg

    for i, text in enumerate(HOSTILE):
        queue = text[:255]
        id = (text + str(i)) * 3
        # A long meta value, within the 64 KiB a meta may take.
        meta = {text: text, "sql": "'); DELETE FROM trioqueue_tasks; --", "long": long[:50_000]}
        async with opened(db, queue=queue) as backend:
            got = await backend.push(text + long, id=id, meta=meta)
            assert got == id
            seen.clear()
            await WorkerBuilder("w").backend(backend).build(echo).run(burst=True)
            assert seen == [(text + long, meta)]
            t = await task(backend, id)
            assert (t.id, t.queue, t.meta, t.result, t.status) == (
                id,
                queue,
                meta,
                text + long,
                Status.DONE,
            )
            assert [x.id for x in await backend.list_tasks(queue=queue)] == [id]
    async with opened(db) as backend:
        counts = await backend.counts()
        assert counts == {text[:255]: {Status.DONE: 1} for text in HOSTILE}


async def test_admin_operations(db: str, clock: ManualClock) -> None:
    async with opened(db, clock) as backend:
        await backend.push_bulk(range(3))  # generated ids
        for i in range(10):
            await backend.push_task(
                tq.Task(i, id=tq.TaskId(f"t{i:02d}"), queue="other" if i % 2 else None)
            )
        assert await backend.counts(queue="other") == {"other": {Status.PENDING: 5}}
        page = await backend.list_tasks(queue="default", limit=3, offset=1)
        assert [t.id for t in page] == ["t06", "t04", "t02"]
        assert [t.id for t in await backend.list_tasks(status="pending", limit=2)] == [
            "t09",
            "t08",
        ]
        assert await backend.get_task("missing") is None

        assert await backend.cancel_task("t00") is True
        assert await backend.cancel_task("t00") is False
        assert (await task(backend, "t00")).status is Status.CANCELLED
        assert await backend.retry_task("t02") is False  # pending, not failed

        async def fail(x: int) -> None:
            raise tq.Abort("no")

        await WorkerBuilder("w").backend(backend).build(fail).run(burst=True)
        killed = await task(backend, "t02")
        assert (killed.status, killed.attempts, killed.last_error) == (
            Status.KILLED,
            1,
            "aborted: no",
        )
        clock.advance(100)
        assert await backend.retry_task("t02") is True
        retried = await task(backend, "t02")
        assert retried.run_at is not None
        assert (retried.status, retried.run_at.timestamp()) == (Status.PENDING, clock.now)
        assert await backend.counts(queue="default") == {
            "default": {Status.CANCELLED: 1, Status.KILLED: 6, Status.PENDING: 1}
        }
        assert await backend.purge(older_than=101) == 0  # finished at T0 / T0 + 0
        assert await backend.purge(older_than=50) == 7
        assert await backend.counts() == {
            "default": {Status.PENDING: 1},
            "other": {Status.PENDING: 5},
        }
