"""The SQLite driver's connection on real files: its two threads, lock waits, cancellation,
group commit failures and the wake-up on other connections' commits."""

from __future__ import annotations

import math
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioqueue import Outcome, PushError, Status, StoredTask
from trioqueue.backends import _sqlite_driver as sqlite_module
from trioqueue.backends._sqlite_wake import FileWatch, Waker
from trioqueue.backends.sqlite import SqliteBackend, SqliteDriver

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tasks.db")


def record(id: str, *, queue: str = "default") -> StoredTask:
    return StoredTask(id=id, queue=queue, payload=b'"x"', run_at=0.0, created_at=0.0)


@asynccontextmanager
async def driver(db: str, **options: Any) -> AsyncIterator[SqliteDriver]:
    d = await SqliteDriver.connect(db, **options)
    try:
        yield d
    finally:
        await d.aclose()


def write_lock(db: str) -> sqlite3.Connection:
    """Take the database's write lock from another connection (``COMMIT`` releases it)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


# -- where calls run --


async def test_short_calls_run_on_the_trio_thread(db: str) -> None:
    async with driver(db) as d:
        await d.insert([record("a")])
        before = d.db.thread_calls
        claimed = await d.claim("default", 1, "tok", 30.0)
        await d.start([t.id for t in claimed], "tok")
        await d.settle([done(t.id) for t in claimed], "tok")
        assert d.db.thread_calls == before
        assert d.db.direct_calls >= 3


async def test_a_large_insert_runs_on_the_connection_thread(db: str) -> None:
    async with driver(db) as d:
        before = d.db.thread_calls
        n = sqlite_module.DIRECT_ROWS + 1
        assert await d.insert([record(f"t{i:04d}") for i in range(n)]) == n
        assert d.db.thread_calls == before + 1


async def test_every_few_writes_one_runs_on_the_thread_to_checkpoint(db: str) -> None:
    async with driver(db, synchronous="off") as d:
        before = d.db.thread_calls
        for i in range(sqlite_module.CHECKPOINT_EVERY * 2):
            await d.insert([record(f"t{i:04d}")])
        assert d.db.thread_calls - before == 2


async def test_a_locked_file_is_waited_for_on_the_thread_not_the_trio_thread(db: str) -> None:
    async with driver(db, busy_timeout=30.0) as d:
        stored: list[int] = []
        lock = write_lock(db)
        try:
            async with trio.open_nursery() as nursery:

                async def insert() -> None:
                    stored.append(await d.insert([record("a")]))

                nursery.start_soon(insert)
                # The Trio thread is free while the insert waits for the lock.
                await trio.testing.wait_all_tasks_blocked()
                assert stored == [] and d.db.busy_retries == 1
                lock.execute("COMMIT")
        finally:
            lock.close()
        assert stored == [1]
        got = await d.get("a")
        assert got is not None and got.status is Status.PENDING


async def test_a_cancelled_call_still_completes_and_reports(db: str) -> None:
    async with driver(db, busy_timeout=30.0) as d:
        await d.insert([record("a"), record("b")])
        assert len(await d.claim("default", 2, "tok", 30.0)) == 2
        results: list[list[str]] = []
        scope = trio.CancelScope()
        lock = write_lock(db)
        try:
            async with trio.open_nursery() as nursery:

                async def settle() -> None:
                    with scope:
                        results.append(await d.settle([done("a"), done("b")], "tok"))
                        await trio.lowlevel.checkpoint()  # the cancel is delivered here

                nursery.start_soon(settle)
                await trio.testing.wait_all_tasks_blocked()
                assert d.db.busy_retries == 1
                scope.cancel()  # while the settle waits for the lock on the thread
                await trio.testing.wait_all_tasks_blocked()
                assert results == []
                lock.execute("COMMIT")
        finally:
            lock.close()
        # The batch the caller handed over was applied, and the caller learned it.
        assert results == [["a", "b"]]
        assert scope.cancelled_caught
        for id in ("a", "b"):
            got = await d.get(id)
            assert got is not None and got.status is Status.DONE


def done(id: str) -> Outcome:
    return Outcome(id, Status.DONE, result=b"null")


# -- group commit --

REFUSE_ALL = """
CREATE TRIGGER refuse BEFORE INSERT ON trioqueue_tasks
BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END
"""
REFUSE_BOOM = """
CREATE TRIGGER refuse BEFORE INSERT ON trioqueue_tasks
WHEN NEW.payload = CAST('"boom"' AS BLOB)
BEGIN SELECT RAISE(ABORT, 'boom refused'); END
"""


def install(db: str, trigger: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(trigger)
    finally:
        conn.close()


async def push_all_at_once(
    backend: SqliteBackend, values: list[str]
) -> dict[str, BaseException | str]:
    """Push each value from its own task, all sent before storage answers any."""
    out: dict[str, BaseException | str] = {}

    async def push(value: str) -> None:
        try:
            out[value] = await backend.push(value, id=f"id-{value}")
        except PushError as exc:
            out[value] = exc

    async with trio.open_nursery() as nursery:
        for v in values:
            nursery.start_soon(push, v)
    return out


async def test_a_failed_group_commit_fails_every_push_in_it(db: str) -> None:
    async with SqliteBackend.open(db) as backend:
        install(db, REFUSE_ALL)
        values = [f"v{i}" for i in range(20)]
        out = await push_all_at_once(backend, values)
        assert set(out) == set(values)
        for v in values:
            exc = out[v]
            assert isinstance(exc, PushError), (v, exc)
            assert isinstance(exc.__cause__, sqlite3.IntegrityError)
        # None of them is stored: the rows inserted before the failing one rolled back.
        assert await backend.counts() == {}
        assert backend.statistics().tasks_pushed == 0


async def test_one_bad_push_fails_alone_and_the_others_are_stored(db: str) -> None:
    async with SqliteBackend.open(db) as backend:
        install(db, REFUSE_BOOM)
        values = [f"v{i}" for i in range(10)] + ["boom"] + [f"w{i}" for i in range(10)]
        out = await push_all_at_once(backend, values)
        assert isinstance(out["boom"], PushError)
        assert await backend.get_task("id-boom") is None
        stored = [v for v in values if v != "boom"]
        for v in stored:
            assert out[v] == f"id-{v}"
            task = await backend.get_task(f"id-{v}")
            assert task is not None and task.args == v
        assert await backend.counts() == {"default": {Status.PENDING: len(stored)}}
        assert backend.statistics().tasks_pushed == len(stored)


async def test_a_refused_insert_leaves_the_connection_usable(db: str) -> None:
    async with driver(db) as d:
        install(db, REFUSE_BOOM)
        boom = StoredTask(id="b", queue="default", payload=b'"boom"', run_at=0.0, created_at=0.0)
        with pytest.raises(sqlite3.IntegrityError):
            await d.insert([record("a"), boom, record("c")])
        assert [await d.get(id) for id in ("a", "b", "c")] == [None, None, None]
        assert await d.insert([record("a"), record("c")]) == 2


# -- waking up on another connection's commit --


async def idle_then_push(waiter: SqliteDriver, pusher: SqliteDriver) -> tuple[int, float]:
    """Wait idle for 0.3 s, then push from the other connection.

    Returns the data version reads the waiter made while idle and the seconds
    from the push to the waiter's wake-up.
    """
    assert await waiter.claim("default", 1, "tok", 30.0) == []
    woke_at: list[float] = []

    async def wait() -> None:
        await waiter.wait_for_tasks("default", 60.0)
        woke_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        before = waiter.db.direct_calls
        await trio.sleep(0.3)  # an idle stretch: what does the waiter do meanwhile?
        idle_reads = waiter.db.direct_calls - before
        pushed_at = trio.current_time()
        await pusher.insert([record("t1")])
    return idle_reads, woke_at[0] - pushed_at


@linux_only
async def test_an_idle_waiter_sleeps_on_inotify_and_wakes_on_a_commit(db: str) -> None:
    # Polling would read the data version every 5 ms: with inotify it reads none while idle.
    async with driver(db, poll_min=0.005, poll_max=0.005) as waiter, driver(db) as pusher:
        assert waiter.watching and "wake=inotify" in repr(waiter)
        idle_reads, latency = await idle_then_push(waiter, pusher)
        assert idle_reads == 0
        assert latency < 1.0
        assert [t.id for t in await waiter.claim("default", 1, "tok", 30.0)] == ["t1"]


async def test_without_inotify_the_waiter_polls_and_wakes_on_a_commit(db: str) -> None:
    async with driver(db, poll_min=0.005, poll_max=0.005, watch=False) as waiter:
        async with driver(db) as pusher:
            assert not waiter.watching and "wake=poll" in repr(waiter)
            idle_reads, latency = await idle_then_push(waiter, pusher)
            assert idle_reads >= 10
            assert latency < 1.0


@linux_only
async def test_the_watch_option_in_the_url(db: str) -> None:
    async with SqliteBackend.open(f"sqlite:///{db}?watch=false") as backend:
        assert isinstance(backend.driver, SqliteDriver) and not backend.driver.watching
    async with SqliteBackend.open(f"sqlite:///{db}") as backend:
        assert isinstance(backend.driver, SqliteDriver) and backend.driver.watching
    with pytest.raises(ValueError, match="watch must be a boolean"):
        async with SqliteBackend.open(f"sqlite:///{db}?watch=maybe"):
            pass


@linux_only
async def test_file_watch_wakes_every_waiter_and_hands_over_the_reading(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"")
    watch = FileWatch.open(str(path))
    assert watch is not None
    try:
        woke: list[str] = []

        async def wait(name: str, scope: trio.CancelScope) -> None:
            with scope:
                await watch.wait_changed(0)
                woke.append(name)

        scopes = {name: trio.CancelScope() for name in ("a", "b", "c")}
        async with trio.open_nursery() as nursery:
            for name, scope in scopes.items():
                nursery.start_soon(wait, name, scope)
            await trio.testing.wait_all_tasks_blocked()
            scopes["a"].cancel()  # the first waiter reads the descriptor: another takes over
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []
            with path.open("ab") as f:
                f.write(b"x")
        assert sorted(woke) == ["b", "c"]
        assert watch.generation == 1
        watch.poke()
        await watch.wait_changed(1)  # moved already: returns at once
    finally:
        watch.close()
    assert not watch.alive
    await watch.wait_changed(watch.generation)  # closed: returns at once


async def test_file_watch_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert FileWatch.open(str(tmp_path / "missing")) is None


@linux_only
async def test_a_signal_that_shows_a_while_after_its_write_is_still_seen(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # A commit shows once its writer has updated the WAL index, after its last
    # write to the WAL file (the write the watch reports); a loaded machine can
    # pause the writer between the two. A waiter that read the count in that
    # gap must read it again, not sleep until a next write that never comes.
    path = tmp_path / "f"
    path.write_bytes(b"")
    watch = FileWatch.open(str(path))
    assert watch is not None
    waker = Waker(watch, poll_min=0.001, poll_max=0.1)
    shows_at = math.inf

    async def count() -> int:
        await trio.lowlevel.checkpoint()
        return int(trio.current_time() >= shows_at)

    async def commit_late() -> None:
        nonlocal shows_at
        await trio.sleep(1.0)
        with path.open("ab") as f:  # the writer's last write to the WAL file...
            f.write(b"x")
        shows_at = trio.current_time() + 0.5  # ...and its commit shows half a second later

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit_late)
            start = trio.current_time()
            got = await waker.wait_signal(trio.Event(), 0, count, 60.0, every=0.25)
            took = trio.current_time() - start
    finally:
        watch.close()
    assert got == 1, "the waiter slept past a commit that showed late"
    assert took < 2.0
