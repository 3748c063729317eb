"""The command line as a real process: the installed script, ``python -m``, signals, exit codes."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest
from cli.cli_project import Cli

SCRIPT = Path(sys.executable).with_name("trioqueue")


def run(cli: Cli, argv: list[str], *, code: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=cli.root, env=dict(os.environ), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")
def test_console_script(cli: Cli) -> None:
    assert run(cli, [str(SCRIPT), "migrate"], code=0).stdout.startswith("sqlite schema")
    assert run(cli, [str(SCRIPT), "status", "--json"], code=0).stdout == "{}\n"
    err = run(cli, [str(SCRIPT), "status", "--backend", "redis://localhost"], code=3).stderr
    assert err.startswith("trioqueue: error: unknown backend URL 'redis://localhost'")


def test_python_dash_m(cli: Cli) -> None:
    python_m = [sys.executable, "-m", "trioqueue"]
    err = run(cli, [*python_m, "tasks", "--status", "zombie"], code=2).stderr
    assert "usage: trioqueue" in err and "unknown status 'zombie'" in err
    run(cli, [*python_m, "migrate"], code=0)
    err = run(cli, [*python_m, "show", "NOPE"], code=4).stderr
    assert err == "trioqueue: error: no task with id 'NOPE'\n"


def read_until(stream: IO[bytes], needle: bytes, *, timeout: float = 30.0) -> bytes:
    """Read ``stream`` (a pipe) until ``needle`` has come; return what was read."""
    fd, seen = stream.fileno(), b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {needle!r}; got {seen!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"the stream ended before {needle!r}; got {seen!r}"
            seen += chunk
    return seen


def worker(cli: Cli, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "trioqueue", "worker", *args],
        cwd=cli.root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], err: bytes = b"") -> tuple[int, str]:
    """Wait for ``proc``; return its exit status and all of its stderr."""
    try:
        _, rest = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, (err + rest).decode()


def test_sigterm_lets_the_running_task_finish(cli: Cli) -> None:
    ids = [cli.push("jobs:slow", str(n)) for n in range(3)]
    proc = worker(cli, "jobs:slow", "--concurrency", "1")
    assert proc.stdout is not None
    started = int(read_until(proc.stdout, b"\n").split()[1])
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert "received SIGTERM: graceful shutdown" in err
    assert "done 1, failed 0, killed 0" in err
    tasks = {t["id"]: t for t in cli.json("tasks")}
    finished = ids[started]
    assert tasks[finished]["status"] == "done"
    assert tasks[finished]["result"] == "finished after shutdown"
    # The others were never started: released (their attempt uncounted), not lost.
    for task_id in set(ids) - {finished}:
        assert (tasks[task_id]["status"], tasks[task_id]["attempts"]) == ("pending", 0)
    assert cli.status() == {"done": 1, "pending": 2}


def test_second_signal_cancels_and_releases(cli: Cli) -> None:
    task_id = cli.push("jobs:stuck", "1")
    proc = worker(cli, "jobs:stuck", "--shutdown-timeout", "60", "--log-level", "info")
    assert proc.stdout is not None and proc.stderr is not None
    read_until(proc.stdout, b"started 1\n")
    proc.send_signal(signal.SIGINT)
    err = read_until(proc.stderr, b"graceful shutdown")
    proc.send_signal(signal.SIGINT)
    code, log = finish(proc, err)
    assert code == 130, log
    assert "Traceback" not in log
    assert "received SIGINT: second signal, cancelling running tasks" in log
    assert "shutdown timeout" not in log  # the second signal said so, not a timeout
    shown = cli.json("show", task_id)
    assert (shown["status"], shown["attempts"]) == ("pending", 0)


SLOW_CLOSE = """
import sys
from contextlib import asynccontextmanager

import trio

from trioqueue import MemoryBackend
from trioqueue.drivers import BackendSpec, register_backend


@asynccontextmanager
async def open_slow_close(url, **options):
    async with MemoryBackend.open(**options) as backend:
        await backend.push(1)
        yield backend
        print("closing the backend", file=sys.stderr, flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)


register_backend(
    BackendSpec(name="slowclose", schemes=("slowclose",), open=open_slow_close, example="x")
)


async def handler(n: int) -> int:
    print("ran", n, file=sys.stderr, flush=True)
    return n
"""


@pytest.mark.parametrize("first", ["graceful", "burst"])
def test_a_signal_after_the_worker_stopped_still_counts(cli: Cli, first: str) -> None:
    # The backend closes only once stdin gets a line, so the second signal
    # lands, for sure, after the worker stopped and before the process exits.
    (cli.root / "slowclose.py").write_text(SLOW_CLOSE)
    argv = [sys.executable, "-m", "trioqueue", "worker", "slowclose:handler"]
    argv += ["--backend", "slowclose://", "--log-level", "info"]
    if first == "burst":
        argv.append("--burst")
    proc = subprocess.Popen(
        argv,
        cwd=cli.root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    err = b""
    if first == "graceful":
        err += read_until(proc.stderr, b"ran 1")  # the worker runs
        proc.send_signal(signal.SIGTERM)
    err += read_until(proc.stderr, b"closing the backend")
    proc.send_signal(signal.SIGTERM)
    err += read_until(proc.stderr, b"received SIGTERM while exiting")
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    code, log = finish(proc, err)
    # A second signal means 130; a first one that finds the worker stopped
    # by itself (--burst) changes nothing.
    assert code == (130 if first == "graceful" else 0), log
    assert "Traceback" not in log


def test_a_signal_before_the_worker_started_interrupts(cli: Cli) -> None:
    (cli.root / "slowopen.py").write_text(
        SLOW_CLOSE.replace("slowclose", "slowopen").replace(
            "        yield backend\n",
            "        print('opening', file=sys.stderr, flush=True)\n"
            "        await trio.sleep_forever()\n        yield backend\n",
        )
    )
    proc = worker(cli, "slowopen:handler", "--backend", "slowopen://")
    assert proc.stderr is not None
    err = read_until(proc.stderr, b"opening")
    proc.send_signal(signal.SIGTERM)
    code, log = finish(proc, err)
    assert code == 130, log
    assert "received SIGTERM before the worker started: exiting" in log
    assert "Traceback" not in log
