"""A task retried by RetryLayer and killed mid-retry keeps its attempt count (SQLite, SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio

from trioqueue import Attempt, Status, WorkerBuilder

try:
    from trioqueue.backends.sqlite import SqliteBackend

    sqlite_available = True
except ImportError:  # pragma: no cover - the SQLite backend is part of the package
    sqlite_available = False

pytestmark = [
    pytest.mark.skipif(not sqlite_available, reason="the SQLite backend is not available"),
    pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL"),
    pytest.mark.timeout(60),
]

ROOT = str(Path(__file__).resolve().parents[2])

CHILD = textwrap.dedent(
    """
    import sys
    import trio
    from trioqueue import Attempt, Fixed, WorkerBuilder
    from trioqueue.backends.sqlite import SqliteBackend
    from trioqueue.layers import RetryLayer

    async def handler(x: int, attempt: Attempt) -> None:
        print(f"attempt {attempt}", flush=True)
        if attempt == 1:
            raise ConnectionError("first attempt fails")
        await trio.sleep_forever()  # attempt 2 is running when the process is killed

    async def main() -> None:
        async with SqliteBackend.open(sys.argv[1]) as backend:
            worker = (
                WorkerBuilder("doomed")
                .backend(backend)
                .layer(RetryLayer(Fixed(0.0)))
                .lease(2.0)
                .poll_interval(0.05)
                .build(handler)
            )
            await worker.run()

    trio.run(main)
    """
)


async def _wait_for_line(stream: trio.abc.ReceiveStream, wanted: bytes) -> list[bytes]:
    seen = b""
    while wanted not in seen:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"the child ended before printing {wanted!r}: {seen!r}")
        seen += chunk
    return seen.splitlines()


async def test_killed_mid_retry_keeps_its_attempt_count(tmp_path: Path) -> None:
    db = str(tmp_path / "jobs.db")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    async with SqliteBackend.open(db) as backend:
        tid = await backend.push(1, max_attempts=5)

    proc = await trio.lowlevel.open_process(
        [sys.executable, str(script), db],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(30):
            lines = await _wait_for_line(proc.stdout, b"attempt 2\n")
        assert lines == [b"attempt 1", b"attempt 2"]
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # Restart, with the clock moved past the dead worker's lease.
    seen: list[int] = []

    async def handler(x: int, attempt: Attempt) -> str:
        seen.append(attempt)
        return "recovered"

    async with SqliteBackend.open(db, clock=lambda: time.time() + 60) as backend:
        before = await backend.get_task(tid)
        assert before is not None
        # The claim (attempt 2) is stored; the RUNNING mark may not have been flushed.
        assert before.status in (Status.QUEUED, Status.RUNNING)
        assert before.attempts == 2
        assert await backend.rescue() == 1
        rescued = await backend.get_task(tid)
        assert rescued is not None
        assert (rescued.status, rescued.attempts) == (Status.FAILED, 2)
        await WorkerBuilder("fresh").backend(backend).build(handler).run(burst=True)
        after = await backend.get_task(tid)
    assert seen == [3]
    assert after is not None
    assert (after.status, after.attempts, after.result) == (Status.DONE, 3, "recovered")
