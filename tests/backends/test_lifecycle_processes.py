"""A task's life across processes, on SQLite files and PostgreSQL.

A waiter, a watcher or a worker runs in a child process (``lifecycle_child.py``);
this process pushes, cancels and checks.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from pg_support import store_url

import trioqueue as tq
from trioqueue import Status

CHILD = str(Path(__file__).with_name("lifecycle_child.py"))

pytestmark = pytest.mark.seconds


class Child:
    """A child process whose stdout is read line by line."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = b""

    async def line(self) -> str:
        assert self.proc.stdout is not None
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError(f"the child ended before a line: {self._buf!r}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    async def json(self) -> Any:
        return json.loads(await self.line())


@asynccontextmanager
async def child(*args: str) -> AsyncIterator[Child]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = await trio.lowlevel.open_process(
        [sys.executable, CHILD, *args], stdout=-1, env=env
    )  # -1: subprocess.PIPE
    c = Child(proc)
    try:
        with trio.fail_after(30):
            assert await c.line() == "ready"
        yield c
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


KINDS = ["sqlite", "postgres"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_waiter_in_another_process_gets_the_result_or_the_failure(
    kind: str, tmp_path: Path
) -> None:
    async def handler(n: int) -> int:
        if n < 0:
            raise tq.Abort("negative")
        return n * 10

    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url) as b:
            ok = await b.push(4)
            bad = await b.push(-1)
            never = await b.push(5, delay=3600)
            async with child(url, "wait", ok) as w_ok, child(url, "wait", bad) as w_bad:
                async with child(url, "wait", never) as w_never:
                    worker = tq.WorkerBuilder("parent").backend(b).build(handler)
                    async with trio.open_nursery() as nursery:
                        await nursery.start(worker.serve)
                        with trio.fail_after(20):
                            assert await w_ok.json() == {"result": 40}
                            assert await w_bad.json() == {"error": "TaskFailed"}
                            assert await b.cancel_task(never)
                            assert await w_never.json() == {"error": "TaskCancelled"}
                        worker.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_running_task_in_a_worker_process_is_cancelled_from_here(
    kind: str, tmp_path: Path
) -> None:
    lease = 3.0  # SQLite: within one extension, a third of it; PostgreSQL: at once
    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url) as b:
            async with child(url, "worker", str(lease)) as worker:
                tid = await b.push(1)
                with trio.fail_after(20):
                    assert await worker.line() == f"started {tid}"
                asked = trio.current_time()
                assert await b.cancel_task(tid)
                with trio.fail_after(20), pytest.raises(tq.TaskCancelled):
                    await b.wait_result(tid)
                took = trio.current_time() - asked
                limit = 0.5 if kind == "postgres" else lease / 3 + 0.5
                assert took < limit, f"cancelled after {took:.2f}s"
                task = await b.get_task(tid)
                assert task is not None and task.status is Status.CANCELLED
                assert task.attempts == 1 and task.worker and task.worker.startswith("child@")
                assert task.started_at is not None and task.finished_at is not None


@pytest.mark.parametrize("kind", KINDS)
async def test_progress_reaches_a_watcher_in_another_process(kind: str, tmp_path: Path) -> None:
    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url) as b:
            tid = await b.push(1)
            async with child(url, "watch", tid) as watcher, child(url, "worker", "30") as worker:
                with trio.fail_after(20):
                    assert await worker.line() == f"started {tid}"
                    seen = [await watcher.json()]
                    while seen[-1]["progress"] is None:
                        seen.append(await watcher.json())
                assert seen[-1] == {"status": "running", "progress": {"step": 1}} or seen[-1] == {
                    "status": "queued",
                    "progress": {"step": 1},
                }
                assert seen[0]["status"] in ("pending", "queued", "running")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_killed_worker_disappears_from_the_registry_once_stale(
    kind: str, tmp_path: Path
) -> None:
    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url) as b:
            async with child(url, "worker", "3") as worker:
                live = await b.workers()
                assert [w.pid for w in live] == [worker.proc.pid]
                assert live[0].name.startswith("child@") and live[0].concurrency >= 1
                worker.proc.send_signal(signal.SIGKILL)
                await worker.proc.wait()
                (entry,) = await b.workers()  # its last refresh, before the kill
                assert entry.pid == worker.proc.pid
                stale_after = 2.0
                stale_at = entry.last_seen.timestamp() + stale_after
                assert stale_at > time.time(), "the entry went stale before it was checked"
                await trio.sleep(stale_at - time.time() + 0.2)  # the expiry itself, not work
                assert await b.workers(stale_after=stale_after) == []
                assert [w.pid for w in await b.workers(stale_after=60)] == [worker.proc.pid]


#: How soon a cancel from another process must reach the worker, in seconds:
#: it takes about 0.25 s on SQLite and less on PostgreSQL; a lease of 30 s
#: extends every 10 s, so a bound well under that tells the wake-up from the
#: extension even on a loaded machine.
PROMPT = 3.0


async def test_a_running_task_in_a_sqlite_worker_process_stops_within_a_second(
    tmp_path: Path,
) -> None:
    # A lease of 30 s extends every 10 s: only the file's wake-up (the cancel
    # count read after another process's commit) brings it within a second.
    with store_url("sqlite", tmp_path) as url:
        async with tq.open_backend(url) as b:
            async with child(url, "worker", "30") as worker:
                tid = await b.push(1)
                with trio.fail_after(20):
                    assert await worker.line() == f"started {tid}"
                asked = trio.current_time()
                assert await b.cancel_task(tid)
                with trio.fail_after(20), pytest.raises(tq.TaskCancelled):
                    await b.wait_result(tid)
                took = trio.current_time() - asked
                assert took < PROMPT, f"cancelled after {took:.2f}s"


@pytest.mark.parametrize("kind", KINDS)
async def test_a_buffered_task_in_a_worker_process_is_cancelled_within_a_second(
    kind: str, tmp_path: Path
) -> None:
    # One slot: the first task runs until cancelled, the second waits in the
    # child's prefetch buffer and must leave it, never run, while the first
    # runs on. A lease of 30 s extends every 10 s.
    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url) as b:
            async with child(url, "worker", "30", "1") as worker:
                first = await b.push(1)
                with trio.fail_after(20):
                    assert await worker.line() == f"started {first}"
                second = await b.push(2)
                with trio.fail_after(20):
                    async with aclosing(b.watch(second)) as snapshots:
                        async for t in snapshots:  # claimed behind the first: buffered
                            if t.status is Status.QUEUED:
                                break
                asked = trio.current_time()
                assert await b.cancel_task(second)
                with trio.fail_after(20), pytest.raises(tq.TaskCancelled):
                    await b.wait_result(second)
                took = trio.current_time() - asked
                assert took < PROMPT, f"cancelled after {took:.2f}s"
                task = await b.get_task(second)
                assert task is not None and task.started_at is None  # it never ran
                task = await b.get_task(first)
                assert task is not None and task.status is Status.RUNNING
