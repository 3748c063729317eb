"""Three worker processes with the same ``every(1)`` schedule, on SQLite and PostgreSQL.

Each tick is one task, none missing, while three push; then two are killed
(SIGKILL) and the third goes on without a gap or a double.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import trio
from pg_support import store_url

import trioqueue as tq
from trioqueue.drivers import ScheduleRecord

CHILD = str(Path(__file__).with_name("schedule_child.py"))
PREFIX = "sched:tick:"

pytestmark = pytest.mark.seconds


class Children:
    """Worker processes whose ``ran ID`` lines arrive on one channel as (child, tick)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.procs: list[trio.Process] = []
        self.send, self.receive = trio.open_memory_channel[tuple[int, datetime]](1000)

    async def start(self, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = await trio.lowlevel.open_process(
            [sys.executable, CHILD, url], stdout=-1, env=env
        )  # -1: subprocess.PIPE
        self.procs.append(proc)
        ready = trio.Event()
        self.nursery.start_soon(self._read, len(self.procs) - 1, proc, ready)
        with trio.fail_after(30):
            await ready.wait()

    async def _read(self, n: int, proc: trio.Process, ready: trio.Event) -> None:
        assert proc.stdout is not None
        buf = b""
        while chunk := await proc.stdout.receive_some(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode()
                if text == "ready":
                    ready.set()
                elif text.startswith(f"ran {PREFIX}"):
                    tick = datetime.fromisoformat(text[len("ran " + PREFIX) :])
                    await self.send.send((n, tick))

    async def ticks_run(self, count: int, *, after: datetime | None = None) -> list[datetime]:
        """Wait until ``count`` distinct ticks later than ``after`` ran; return them in order."""
        seen: set[datetime] = set()
        with trio.fail_after(count + 30):
            while len(seen) < count:
                _, tick = await self.receive.receive()
                if after is None or tick > after:
                    seen.add(tick)
        return sorted(seen)

    def kill(self, n: int) -> None:
        self.procs[n].kill()

    async def aclose(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
        with trio.CancelScope(shield=True):
            for proc in self.procs:
                await proc.wait()


@asynccontextmanager
async def children() -> AsyncIterator[Children]:
    async with trio.open_nursery() as nursery:
        c = Children(nursery)
        try:
            yield c
        finally:
            await c.aclose()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_three_processes_push_each_tick_once_and_one_goes_on_alone(
    kind: str, tmp_path: Path
) -> None:
    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url) as backend:  # migrates before the children start
            async with children() as kids:
                for _ in range(3):
                    await kids.start(url)
                together = await kids.ticks_run(10)
                kids.kill(0)
                kids.kill(1)
                alone = await kids.ticks_run(5, after=together[-1] + timedelta(seconds=1))
                kids.kill(2)
            tasks = await backend.list_tasks(limit=10_000)
            records = await backend.driver.schedules()
        ticks = sorted(datetime.fromisoformat(t.id[len(PREFIX) :]) for t in tasks)
        assert all(t.id.startswith(PREFIX) for t in tasks)
        # One task per tick, every second from the first to the last: no gap, no double.
        want = [ticks[0] + timedelta(seconds=s) for s in range(len(ticks))]
        assert ticks == want
        assert all(t.microsecond == 0 for t in ticks)
        assert set(together) | set(alone) <= set(ticks)
        assert ticks[-1] >= alone[-1]
        (rec,) = records
        assert rec.name == "tick" and rec.interval == 1.0 and rec.expr is None
        # The last child may die between a push and its record: at most one tick behind.
        assert rec.last_tick in (ticks[-1].timestamp(), ticks[-2].timestamp())


#: A handler module as ``trioqueue worker`` runs it: two handlers, schedules for one.
TICKER = """
from trioqueue import TaskId, WorkerBuilder


async def tick(args: str | None, task_id: TaskId) -> None:
    pass


async def other(args: None) -> None:
    pass


def configure_worker(builder: WorkerBuilder) -> None:
    print(f"configure {builder.name} for {builder.handler.__name__}", flush=True)
    if builder.handler is tick:
        builder.every(1)  # catch_up "latest"
        builder.cron("* * * * * *", args="all", catch_up="all")  # each second, each missed one
"""
EVERY = "ticker:tick:every:1s"


class CliWorkers:
    """``trioqueue worker ticker:tick ticker:other`` processes in ``folder``."""

    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.url = folder, url
        self.procs: list[trio.Process] = []
        self.out: list[bytearray] = []
        self.err: list[bytearray] = []

    async def start(self, nursery: trio.Nursery) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "trioqueue", "worker", "ticker:tick", "ticker:other"]
        argv += ["--backend", self.url, "--log-level", "info", "--poll-interval", "0.2"]
        proc = await trio.lowlevel.open_process(
            argv, cwd=self.folder, env=env, stdout=-1, stderr=-1
        )  # -1: subprocess.PIPE
        self.procs.append(proc)
        self.out.append(bytearray())
        self.err.append(bytearray())
        nursery.start_soon(self._drain, proc.stdout, self.out[-1])
        nursery.start_soon(self._drain, proc.stderr, self.err[-1])

    async def wait_serving(self) -> None:
        """Poll (bounded) until every process logged its banner: its workers are starting."""
        with trio.fail_after(60):
            while True:
                if all(b"trioqueue.cli.banner" in err for err in self.err):
                    return
                await trio.sleep(0.1)

    async def _drain(self, stream: trio.abc.ReceiveStream | None, into: bytearray) -> None:
        assert stream is not None
        while chunk := await stream.receive_some(4096):
            into += chunk

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
        with trio.CancelScope(shield=True):
            for proc in self.procs:
                await proc.wait()


async def ticks_of(backend: tq.Backend, name: str) -> list[datetime]:
    """The ticks stored for schedule ``name``, one per task (a double shows twice)."""
    tasks = await backend.list_tasks(queue="ticker:tick", limit=10_000)
    return sorted(
        datetime.fromisoformat(t.meta["tick"]) for t in tasks if t.meta["schedule"] == name
    )


async def wait_ticks(backend: tq.Backend, name: str, after: float, count: int) -> None:
    """Poll until ``count`` ticks of ``name`` later than ``after`` are stored (bounded)."""
    with trio.fail_after(60):
        while True:
            if sum(t.timestamp() > after for t in await ticks_of(backend, name)) >= count:
                return
            await trio.sleep(0.2)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_cli_workers_share_one_schedule_across_processes_and_restarts(
    kind: str, tmp_path: Path
) -> None:
    (tmp_path / "ticker.py").write_text(TICKER)
    with store_url(kind, tmp_path) as url:
        async with tq.open_backend(url, queue="ticker:tick") as backend:
            now = backend.driver.now()
            # What workers of an older release left: one record per process and
            # schedule, named after the worker's host and pid.
            old = ScheduleRecord(
                "ticker:tick@old-host:4242:every:1s", "ticker:tick", None, 1.0, "UTC",
                now - 601, now - 600,
            )  # fmt: skip
            retired = ScheduleRecord(
                "retired@old-host:4242:every:5s", "retired", None, 5.0, "UTC", now - 605, now - 600
            )  # fmt: skip
            for rec in (old, retired):
                await backend.driver.record_schedule(rec)
            async with trio.open_nursery() as nursery:
                first = CliWorkers(tmp_path, url)
                await first.start(nursery)
                await first.start(nursery)
                await first.wait_serving()
                await wait_ticks(backend, EVERY, backend.driver.now(), 3)  # both pushing
                await first.stop()
                together = await ticks_of(backend, EVERY)
                # Down for three ticks and more: the downtime is the point here.
                down = together[-1].timestamp()
                await trio.sleep(max(0.0, down + 3.5 - backend.driver.now()))
                again = CliWorkers(tmp_path, url)
                await again.start(nursery)
                await wait_ticks(backend, EVERY, down + 3.5, 2)
                await again.stop()
            records = {r.name: r for r in await backend.driver.schedules()}
            every = await ticks_of(backend, EVERY)
            (all_name,) = [n for n in records if n.startswith("ticker:tick:cron:")]
            seconds = await ticks_of(backend, all_name)
        for err in first.err + again.err:
            assert b"Traceback" not in err, err.decode()
        # Each tick once, although two processes pushed it.
        assert len(every) == len(set(every)) and len(seconds) == len(set(seconds))
        assert set(together) <= set(every)
        # The restart caught up from the stored last tick: "latest" pushed one of
        # the missed ticks and said it skipped the others; "all" pushed each.
        assert b"missed tick(s) not pushed (catch_up='latest')" in again.err[0]
        assert [t for t in every if down < t.timestamp() <= down + 2] == []
        assert seconds == [seconds[0] + timedelta(seconds=s) for s in range(len(seconds))]
        # One record per schedule: the old one of this queue was pruned at once
        # (superseded), the retired queue's stays but is stale.
        assert sorted(records) == sorted([EVERY, all_name, retired.name])
        assert all_name.startswith("ticker:tick:cron:* * * * * *#")
        assert records[EVERY].last_tick == every[-1].timestamp()
        out = await trio.run_process(
            [sys.executable, "-m", "trioqueue", "schedules", "--backend", url, "--json"],
            capture_stdout=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
        listed = {r["name"]: r["stale"] for r in json.loads(out.stdout)}
        assert listed == {EVERY: False, all_name: False, retired.name: True}
        # configure_worker was called for each handler with its builder.
        for out in first.out + again.out:
            told = sorted(re.findall(rb"configure (\S+)@\S+ for (\w+)", bytes(out)))
            assert told == [(b"ticker:other", b"other"), (b"ticker:tick", b"tick")]
