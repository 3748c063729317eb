"""The SQLite driver over a task's whole life, on real files: migration 3, worker and
start times, progress, snoozes, cancellation, replace, retention, paused queues,
the workers' registry, and change signals across processes."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioqueue import Outcome, Status, StoredTask
from trioqueue._driver import CANCEL_REQUESTED, Extended, WorkerRecord, apply_outcome
from trioqueue.backends.sqlite import SCHEMA_VERSION, SqliteDriver

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
async def connected(
    db: str, clock: ManualClock | None = None, **options: Any
) -> AsyncIterator[SqliteDriver]:
    driver = await SqliteDriver.connect(db, clock=clock, **options)
    try:
        yield driver
    finally:
        await driver.aclose()


def record(id: str, *, queue: str = "default", **fields: Any) -> StoredTask:
    fields.setdefault("run_at", T0)
    fields.setdefault("created_at", T0)
    return StoredTask(id=id, queue=queue, payload=b'"x"', **fields)


def leased(id: str, **fields: Any) -> StoredTask:
    """A record as a claim leaves it under the token ``tok``."""
    fields.setdefault("status", Status.RUNNING)
    fields.setdefault("attempts", 1)
    fields.setdefault("lease_token", "tok")
    return record(id, lease_expires_at=T0 + 30.0, **fields)


async def stored(driver: SqliteDriver, id: str) -> StoredTask:
    rec = await driver.get(id)
    assert rec is not None
    return rec


# -- migration 3 --

# The statements of schema version 2 as they shipped: a file they made must open.
_VERSION_2 = (
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
    "ALTER TABLE trioqueue_tasks ADD COLUMN traceback TEXT",
    "CREATE TABLE trioqueue_schema (version INTEGER NOT NULL)",
    "INSERT INTO trioqueue_schema (version) VALUES (2)",
)


def _schema_of(path: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name LIKE 'trioqueue%' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    return [
        (name, " ".join(sql.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").split()))
        for name, sql in rows
    ]


async def test_a_version_2_file_migrates_and_keeps_its_tasks(
    tmp_path: Path, clock: ManualClock
) -> None:
    old, new = str(tmp_path / "old.db"), str(tmp_path / "new.db")
    conn = sqlite3.connect(old, isolation_level=None)
    for statement in _VERSION_2:
        conn.execute(statement)
    insert = (
        "INSERT INTO trioqueue_tasks (id, queue, payload, status, attempts, run_at, meta, "
        "created_at, finished_at, last_error, traceback, result, lease_token, lease_expires_at) "
        "VALUES (?, 'default', ?, ?, ?, ?, '{\"k\": 1}', ?, ?, ?, ?, ?, ?, ?)"
    )
    conn.execute(
        insert, ("old-p", b'"p"', "pending", 0, T0, T0, None, None, None, None, None, None)
    )
    conn.execute(insert, ("old-d", b'"d"', "done", 1, T0, T0, T0 + 1, None, None, b"7", None, None))
    conn.execute(
        insert, ("old-f", b'"f"', "failed", 2, T0, T0, None, "E: x", "tb", None, None, None)
    )
    conn.execute(
        insert, ("old-r", b'"r"', "running", 1, T0, T0, None, None, None, None, "tok", T0 + 60)
    )
    conn.close()
    async with connected(old, clock) as driver:
        got = {t.id: t for t in await driver.get_many(["old-p", "old-d", "old-f", "old-r"])}
        assert [got[i].status for i in ("old-p", "old-d", "old-f", "old-r")] == [
            Status.PENDING,
            Status.DONE,
            Status.FAILED,
            Status.RUNNING,
        ]
        assert got["old-d"].result == b"7" and got["old-d"].finished_at == T0 + 1
        assert (got["old-f"].last_error, got["old-f"].traceback) == ("E: x", "tb")
        for t in got.values():  # the new columns' defaults
            assert (t.started_at, t.worker, t.progress) == (None, None, None)
            assert (t.snoozes, t.cancel_requested) == (0, False)
            assert t.meta == {"k": 1}
        # The old running task's lease is still honoured; the new columns work on old rows.
        extended = await driver.extend(["old-r"], "tok", 30.0, {"old-r": '{"n": 1}'})
        assert (extended.held, extended.cancel) == (["old-r"], [])
        assert await driver.cancel("old-r")
        claimed = await driver.claim("default", 10, "tok2", 30.0, "w1")
        assert [(t.id, t.worker) for t in claimed] == [("old-f", "w1"), ("old-p", "w1")]
        await driver.pause("q")
        await driver.register_worker(WorkerRecord("w1", "h", 1, "default", 2, 0, T0))
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT version FROM trioqueue_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
    finally:
        conn.close()
    assert SCHEMA_VERSION >= 3
    async with connected(new):
        pass
    assert _schema_of(old) == _schema_of(new)  # migrated as a new file is made


async def test_every_new_field_round_trips(db: str) -> None:
    rec = leased(
        "all",
        started_at=T0 + 0.5,
        worker="w-1",
        progress='{"done": 3}',
        snoozes=4,
        cancel_requested=True,
        traceback="tb",
        finished_at=None,
    )
    async with connected(db) as driver:
        assert await driver.insert([rec]) == 1
        [got] = await driver.get_many(["all"])
        [listed] = await driver.list_tasks(queue=None, status=None, limit=5, offset=0)
    assert dataclasses.asdict(got) == dataclasses.asdict(rec) == dataclasses.asdict(listed)
    assert got.cancel_requested is True


# -- claim, start, extend --


async def test_claim_stores_the_worker_and_start_the_start_time(
    db: str, clock: ManualClock
) -> None:
    async with connected(db, clock) as driver:
        await driver.insert([record("a"), record("b")])
        [a] = await driver.claim("default", 1, "tok", 30.0, "host-1/w")
        [b] = await driver.claim("default", 1, "tok", 30.0)
        assert (a.worker, b.worker) == ("host-1/w", None)  # an empty name stores NULL
        clock.advance(2.0)
        await driver.start(["a", "b"], "stale")
        assert (await stored(driver, "a")).started_at is None
        await driver.start(["a", "b"], "tok")
        for id in "ab":
            t = await stored(driver, id)
            assert (t.status, t.started_at) == (Status.RUNNING, T0 + 2.0)


async def test_a_paused_queue_gives_nothing_until_resumed(db: str, clock: ManualClock) -> None:
    async with connected(db, clock) as driver, connected(db, clock) as other:
        await driver.insert([record("a"), record("b", queue="other")])
        await driver.pause("default")
        await driver.pause("default")  # idempotent
        await other.pause("zzz")
        assert await driver.paused() == ["default", "zzz"]
        assert await other.claim("default", 10, "tok", 30.0) == []  # another connection
        assert await other.next_run_at("default") is None
        assert [t.id for t in await other.claim("other", 10, "tok", 30.0)] == ["b"]
        await other.resume("default")
        assert await driver.paused() == ["zzz"]
        assert await driver.next_run_at("default") == T0
        assert [t.id for t in await driver.claim("default", 10, "tok", 30.0)] == ["a"]
        await driver.resume("not-paused")  # nothing to do


async def test_resume_wakes_a_waiting_claimer(db: str) -> None:
    async with connected(db) as driver:
        await driver.pause("default")
        await driver.insert([record("a", run_at=0.0)])
        assert await driver.claim("default", 1, "tok", 30.0) == []
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(driver.wait_for_tasks, "default", 3600.0)
                await trio.testing.wait_all_tasks_blocked()
                await driver.resume("default")
        assert len(await driver.claim("default", 1, "tok", 30.0)) == 1


async def test_extend_stores_progress_and_reports_cancellations(
    db: str, clock: ManualClock
) -> None:
    async with connected(db, clock) as driver:
        await driver.insert([leased("a"), leased("b"), leased("c", progress='"old"')])
        await driver.insert([leased("x", lease_token="other")])
        assert await driver.cancel("b")
        out = await driver.extend(
            ["c", "a", "b", "x"], "tok", 60.0, {"a": '{"pct": 50}', "x": '"not mine"'}
        )
        assert (out.held, out.cancel) == (["c", "a", "b"], ["b"])
        assert (await stored(driver, "a")).progress == '{"pct": 50}'
        assert (await stored(driver, "c")).progress == '"old"'  # none given: kept
        assert (await stored(driver, "x")).progress is None  # not held: untouched
        assert (await stored(driver, "a")).lease_expires_at == T0 + 60.0
        out = await driver.extend(["a"], "tok", 60.0)
        assert (out.held, out.cancel) == (["a"], [])
        stale = await driver.extend(["a", "b"], "stale", 60.0, {"a": "1"})
        assert (stale.held, stale.cancel) == ([], [])
        assert (await stored(driver, "a")).progress == '{"pct": 50}'
        assert await driver.extend([], "tok", 60.0) == Extended([])


# -- settle: the reference rules --

_STATUSES = (Status.DONE, Status.FAILED, Status.KILLED, Status.CANCELLED, Status.PENDING)


async def test_settle_applies_the_reference_rules(db: str, clock: ManualClock) -> None:
    """Every outcome, on a task flagged for cancellation or not, with attempts left or not,
    matches ``apply_outcome`` field by field."""
    cases = list(
        itertools.product(_STATUSES, (False, True), (1, 3), (None, "", "E: boom"), (False, True))
    )
    records, outcomes, expected = [], [], []
    for n, (status, cancel, attempts, error, with_times) in enumerate(cases):
        rec = leased(
            f"t{n:03d}",
            attempts=attempts,
            max_attempts=3,
            cancel_requested=cancel,
            last_error="old error",
            traceback="old tb",
            progress='"p0"',
            started_at=T0 - 1.0,
            snoozes=2,
        )
        outcome = Outcome(
            rec.id,
            status,
            result=b"result" if status is Status.DONE else None,
            error=error,
            delay=5.0,
            traceback=None if error is None else "tb",
            started_at=T0 + 0.25 if with_times else None,
            progress='"p1"' if with_times else None,
        )
        want = dataclasses.replace(rec, meta={})
        apply_outcome(want, outcome, T0 + 10.0)
        records.append(rec)
        outcomes.append(outcome)
        expected.append(want)
    async with connected(db, clock) as driver:
        await driver.insert(records)
        clock.advance(10.0)
        applied = await driver.settle(outcomes, "tok")
        assert applied == [o.id for o in outcomes]
        got = await driver.get_many([r.id for r in records])
        assert await driver.settle(outcomes, "tok") == []  # settled once
    for case, want, have in zip(cases, expected, got, strict=True):
        assert dataclasses.asdict(have) == dataclasses.asdict(want), case
    cancelled = [t for t, c in zip(got, cases, strict=True) if c[1]]
    assert {t.status for t in cancelled} == {Status.CANCELLED}
    assert {t.last_error for t in cancelled} == {CANCEL_REQUESTED, "E: boom"}


async def test_a_snooze_gives_the_attempt_back_and_wakes_the_queue(
    db: str, clock: ManualClock
) -> None:
    async with connected(db, clock) as driver:
        await driver.insert([record("a")])
        [a] = await driver.claim("default", 1, "tok", 30.0)
        assert a.attempts == 1
        await driver.settle([Outcome("a", Status.PENDING, delay=5.0)], "tok")
        t = await stored(driver, "a")
        assert (t.status, t.attempts, t.snoozes, t.run_at) == (Status.PENDING, 0, 1, T0 + 5.0)
        assert await driver.next_run_at("default") == T0 + 5.0
        assert await driver.claim("default", 1, "tok", 30.0) == []
        clock.advance(5.0)
        [a] = await driver.claim("default", 1, "tok", 30.0)
        assert (a.attempts, a.snoozes) == (1, 1)


# -- cancellation --


async def test_cancel_ends_waiting_tasks_and_flags_claimed_ones(
    db: str, clock: ManualClock
) -> None:
    async with connected(db, clock) as driver:
        await driver.insert(
            [
                record("p"),
                record("f", status=Status.FAILED, attempts=1),
                leased("q", status=Status.QUEUED),
                leased("r"),
                record("d", status=Status.DONE, finished_at=T0),
            ]
        )
        clock.advance(1.0)
        assert [await driver.cancel(id) for id in ("p", "f", "q", "r", "d", "nope")] == [
            True,
            True,
            True,
            True,
            False,
            False,
        ]
        for id in "pf":
            t = await stored(driver, id)
            assert (t.status, t.finished_at, t.cancel_requested) == (
                Status.CANCELLED,
                T0 + 1.0,
                False,
            )
        for id, status in (("q", Status.QUEUED), ("r", Status.RUNNING)):
            t = await stored(driver, id)
            assert (t.status, t.cancel_requested, t.finished_at) == (status, True, None)
        assert await driver.cancel("r")  # asked again: still not final
        assert await driver.claim("default", 10, "tok", 30.0) == []
        # The holder releases one and loses the other's lease: both end CANCELLED.
        assert await driver.release(["q"], "tok") == 1
        clock.advance(31.0)
        assert await driver.rescue(None) == 1
        for id in "qr":
            t = await stored(driver, id)
            assert (t.status, t.last_error, t.cancel_requested) == (
                Status.CANCELLED,
                CANCEL_REQUESTED,
                False,
            )
            assert (t.lease_token, t.attempts) == (None, 1)
        assert (await stored(driver, "q")).finished_at == T0 + 1.0  # released
        assert (await stored(driver, "r")).finished_at == T0 + 32.0  # rescued


async def test_wait_for_cancel_wakes_on_a_cancel_by_this_driver(db: str) -> None:
    async with connected(db) as driver:
        await driver.insert([leased("r", run_at=0.0)])
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(driver.wait_for_cancel, 3600.0)
                await trio.testing.wait_all_tasks_blocked()
                assert await driver.cancel("r")
        with trio.move_on_after(0.01) as scope:  # no cancel: it waits out max_wait
            await driver.wait_for_cancel(3600.0)
        assert scope.cancelled_caught


# -- replace, get_many --


async def test_replace_swaps_only_final_tasks(db: str, clock: ManualClock) -> None:
    async with connected(db, clock) as driver:
        await driver.insert(
            [
                record("done", status=Status.DONE, result=b"1", finished_at=T0),
                record("killed", status=Status.KILLED, queue="elsewhere", finished_at=T0),
                record("cancelled", status=Status.CANCELLED, finished_at=T0),
                record("pending"),
                leased("running"),
            ]
        )
        ids = ["done", "killed", "cancelled", "pending", "running", "new"]
        fresh = [dataclasses.replace(record(id), payload=b'"fresh"') for id in ids]
        assert await driver.replace(fresh) == 4
        got = {t.id: t for t in await driver.get_many(ids)}
        for id in ("done", "killed", "cancelled", "new"):
            assert (got[id].status, got[id].payload, got[id].queue) == (
                Status.PENDING,
                b'"fresh"',
                "default",
            )
            assert got[id].result is None
        assert got["pending"].payload == b'"x"'
        assert got["running"].status is Status.RUNNING
        assert await driver.replace([]) == 0


async def test_get_many_keeps_the_order_asked_and_leaves_out_missing_ids(db: str) -> None:
    async with connected(db) as driver:
        await driver.insert([record(f"t{i}") for i in range(5)])
        got = await driver.get_many(["t3", "missing", "t0", "t4"])
        assert [t.id for t in got] == ["t3", "t0", "t4"]
        assert await driver.get_many([]) == []


# -- retention and the workers' registry --


async def test_prune_deletes_a_bounded_batch_past_each_status_cutoff(
    db: str, clock: ManualClock
) -> None:
    async with connected(db, clock) as driver:
        await driver.insert(
            [record(f"d{i}", status=Status.DONE, finished_at=T0 - 100 + i) for i in range(5)]
            + [record("d-new", status=Status.DONE, finished_at=T0)]
            + [record("k-old", status=Status.KILLED, finished_at=T0 - 100)]
            + [record("c-old", status=Status.CANCELLED, finished_at=T0 - 100)]
            + [record("c-new", status=Status.CANCELLED, finished_at=T0 - 1)]
            + [record("p", run_at=0.0), leased("r")]
        )
        await driver.register_worker(WorkerRecord("gone", "h", 1, "default", 1, 0, T0))
        clock.advance(50.0)
        await driver.register_worker(WorkerRecord("alive", "h", 2, "default", 1, 0, T0))
        before = {Status.DONE: T0 - 10, Status.CANCELLED: T0 - 50}  # KILLED: kept
        assert await driver.prune(None, before, 3, T0 + 10) == 3
        assert [w.name for w in await driver.workers(0.0)] == ["alive"]
        assert await driver.prune(None, before, 3, T0) == 3
        assert await driver.prune(None, before, 3, T0) == 0
        left = {t.id for t in await driver.list_tasks(queue=None, status=None, limit=99, offset=0)}
        assert left == {"d-new", "k-old", "c-new", "p", "r"}
        assert await driver.prune(None, {}, 10, T0) == 0
        assert await driver.prune(None, {Status.KILLED: T0}, 0, T0) == 0  # limit 0: nothing
        assert await driver.prune(None, {Status.KILLED: T0, Status.PENDING: T0 + 99}, 10, T0) == 1
        assert {t.id for t in await driver.get_many(["k-old", "p"])} == {"p"}


async def test_workers_register_refresh_and_leave(db: str, clock: ManualClock) -> None:
    async with connected(db, clock) as driver:
        w = WorkerRecord("w1", "host", 123, "default", 8, 0, T0 - 5, last_seen=0.0)
        await driver.register_worker(w)
        clock.advance(10.0)
        await driver.register_worker(dataclasses.replace(w, running=3))
        await driver.register_worker(WorkerRecord("w0", "other", 7, "q", 1, 1, T0))
        assert await driver.workers(0.0) == [
            WorkerRecord("w0", "other", 7, "q", 1, 1, T0, last_seen=T0 + 10.0),
            WorkerRecord("w1", "host", 123, "default", 8, 3, T0 - 5, last_seen=T0 + 10.0),
        ]
        assert await driver.workers(T0 + 10.0) == []  # seen after: strictly
        await driver.remove_worker("w1")
        await driver.remove_worker("never")
        assert [w.name for w in await driver.workers(0.0)] == ["w0"]


# -- change signals --


async def test_wait_for_change_wakes_on_this_drivers_changes(db: str) -> None:
    async with connected(db) as driver:
        await driver.insert([record("a", run_at=0.0)])
        await driver.get_many(["a"])
        assert len(await driver.claim("default", 1, "tok", 30.0)) == 1
        # A change made after this task's read and before its wait: at once.
        await driver.start(["a"], "tok")
        with trio.fail_after(30):
            await driver.wait_for_change(3600.0)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(driver.wait_for_change, 3600.0)
                await trio.testing.wait_all_tasks_blocked()
                await driver.settle([Outcome("a", Status.DONE, result=b"1")], "tok")
        with trio.move_on_after(0.01) as scope:  # nothing changed since: it waits
            await driver.wait_for_change(3600.0)
        assert scope.cancelled_caught


_OTHER_PROCESS = """
import sys, trio
from trioqueue import Outcome, Status
from trioqueue.backends.sqlite import SqliteDriver

async def main(path, action, id):
    driver = await SqliteDriver.connect(path)
    try:
        if action == "cancel":
            assert await driver.cancel(id)
        elif action == "kill":
            [task] = await driver.claim("default", 1, "other", 30.0, "other-process")
            await driver.settle([Outcome(task.id, Status.KILLED, error="x")], "other")
        else:
            [task] = await driver.claim("default", 1, "other", 30.0, "other-process")
            await driver.start([task.id], "other")
            await driver.settle([Outcome(task.id, Status.DONE, result=b"42")], "other")
    finally:
        await driver.aclose()

trio.run(main, *sys.argv[1:])
"""


@pytest.mark.seconds
@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "poll"])
@pytest.mark.parametrize("action", ["cancel", "run"])
async def test_wait_for_change_sees_another_process(db: str, watch: bool, action: str) -> None:
    async with connected(db, watch=watch) as driver:
        await driver.insert([record("a", run_at=0.0)])
        if action == "cancel":
            assert len(await driver.claim("default", 1, "tok", 30.0)) == 1

        def done(t: StoredTask) -> bool:
            return t.cancel_requested if action == "cancel" else t.status is Status.DONE

        [seen] = await driver.get_many(["a"])
        assert not done(seen)
        with trio.fail_after(60):  # max_wait is an hour: only the wake-up ends this
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    trio.run_process, [sys.executable, "-c", _OTHER_PROCESS, db, action, "a"]
                )
                while not done(seen):
                    await driver.wait_for_change(3600.0)
                    [seen] = await driver.get_many(["a"])
        if action == "run":
            assert (seen.result, seen.worker) == (b"42", "other-process")
        else:
            assert (await driver.extend(["a"], "tok", 30.0)).cancel == ["a"]


@pytest.mark.seconds
@pytest.mark.parametrize("watch", [True, False], ids=["inotify", "poll"])
@pytest.mark.parametrize("cancelled", ["a", "run", "end-rule"])
async def test_wait_for_cancel_wakes_on_a_cancel_by_another_process(
    db: str, watch: bool, cancelled: str
) -> None:
    # "a" is cancelled itself, as a node of the run "run" that is cancelled,
    # or by the end rule when another node of its run ends KILLED.
    async with connected(db, watch=watch) as driver:
        run = {"trioqueue_run": "run"}
        await driver.insert(
            [
                record("a", run_at=0.0, meta={**run, "trioqueue_node": "n"}),
                record("run", run_at=0.0, status=Status.RUNNING, meta=run),
            ]
        )
        assert len(await driver.claim("default", 1, "tok", 30.0)) == 1
        action, target = ("kill", "b") if cancelled == "end-rule" else ("cancel", cancelled)
        await driver.insert([record("b", run_at=0.0, meta={**run, "trioqueue_node": "m"})])
        woke = trio.Event()

        async def holder() -> None:  # as a worker's extender does
            while not (await driver.extend(["a"], "tok", 30.0)).cancel:
                await driver.wait_for_cancel(3600.0)
            woke.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await trio.testing.wait_all_tasks_blocked()
            await trio.run_process([sys.executable, "-c", _OTHER_PROCESS, db, action, target])
            committed = trio.current_time()
            with trio.fail_after(5):  # max_wait is an hour: only the wake-up ends this
                await woke.wait()
            took = trio.current_time() - committed
            assert took < 1.0, f"the holder learned of the cancel after {took:.2f}s"
