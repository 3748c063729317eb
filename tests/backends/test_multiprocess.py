"""Several worker processes on one queue: every task runs exactly once when none dies."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

import trioqueue as tq
from trioqueue import Status

TASKS = 300


async def run_workers(url: str, workers: int, ledger: Path) -> list[int]:
    """Start ``workers`` burst worker processes at once; return their exit codes."""
    cmd = [sys.executable, "-m", "trioqueue.testing._crash_worker", "--url", url,
           "--queue", "shared", "--ledger", str(ledger), "--lease", "30",
           "--concurrency", "8", "--sleep-max", "0.04", "--burst"]  # fmt: skip
    procs = [await trio.lowlevel.open_process(cmd) for _ in range(workers)]
    with trio.fail_after(120):
        for p in procs:
            await p.wait()
    return [p.returncode for p in procs]


@pytest.mark.parametrize("backend,workers", [("sqlite", 2), ("postgres", 4)])
@pytest.mark.seconds
async def test_worker_processes_never_run_a_task_twice(
    tmp_path: Path, backend: str, workers: int
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/tasks.db"
        await _check(url, workers, tmp_path)
    else:
        from pg_support import fresh_database

        with fresh_database() as url:
            await _check(url, workers, tmp_path)


async def _check(url: str, workers: int, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    async with tq.open_backend(url, queue="shared") as b:
        ids = await b.push_bulk({"n": i} for i in range(TASKS))
    assert await run_workers(url, workers, ledger) == [0] * workers
    runs = [line.split() for line in ledger.read_text().splitlines()]  # id, pid, attempt
    per_task = Counter(task_id for task_id, _, _ in runs)
    assert set(per_task) == set(ids)
    assert max(per_task.values()) == 1, [t for t, n in per_task.items() if n > 1]
    assert len({pid for _, pid, _ in runs}) >= 2, "only one process worked: nothing was shared"
    async with tq.open_backend(url, queue="shared") as b:
        assert await b.counts(queue="shared") == {"shared": {Status.DONE: TASKS}}
