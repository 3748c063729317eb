"""Three worker processes with the same ``every(1)`` schedule, on SQLite and PostgreSQL.

Each tick is one task, none missing, while three push; then two are killed
(SIGKILL) and the third goes on without a gap or a double.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import trio
from pg_support import store_url

import trioqueue as tq

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
