"""Storage unreachable or failing: a worker waits, ``--burst`` and the admin commands give up."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from backends.test_pg_native import Cluster
from cli.cli_project import Cli
from cli.test_subprocess import finish, read_until, worker

import trioqueue as tq


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "argv",
    [["status"], ["migrate"], ["worker", "jobs:send", "--burst"]],
    ids=["status", "migrate", "burst"],
)
def test_a_refused_connection_is_retried_for_the_wait_then_fails(cli: Cli, argv: list[str]) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nobody listens
    began = time.monotonic()
    err = cli(*argv, "--backend", url, "--wait", "1", code=3).err
    took = time.monotonic() - began
    lines = err.splitlines()
    assert lines[-1].startswith("trioqueue: error: cannot "), err
    assert "Connection refused" in lines[-1]
    retries = [line for line in lines if "not reachable" in line]
    assert len(retries) >= 2 and "try 2 in" in retries[0], err  # one line per try
    assert 1.0 <= took < 10, took


def test_a_file_that_cannot_be_opened_is_retried_for_the_wait(cli: Cli) -> None:
    (cli.root / "dir.db").mkdir()  # a directory where the database file should be
    err = cli("tasks", "--backend", "sqlite:///dir.db", "--wait", "0.5", code=3).err
    assert "not reachable (cannot open the SQLite database" in err
    assert err.splitlines()[-1].startswith("trioqueue: error: cannot open backend"), err


@pytest.mark.seconds
def test_a_worker_waits_for_a_server_started_late(cli: Cli) -> None:
    c = Cluster()
    try:
        proc = worker(cli, "jobs:slow", "--backend", c.url, "--log-level", "info")
        assert proc.stdout is not None and proc.stderr is not None
        # Down: the worker waits, one log line per try, instead of exiting.
        err = read_until(proc.stderr, b"not reachable")
        err += read_until(proc.stderr, b"try 3 in")
        assert proc.poll() is None
        c.create()
        subprocess.run(c.pg_ctl("-w", "-t", "60", "start"), check=True, capture_output=True)

        async def push() -> tq.TaskId:
            async with tq.open_backend(c.url, queue="jobs:slow") as backend:
                return await backend.push(7)

        task_id = trio.run(push)
        assert read_until(proc.stdout, b"\n") == b"started 7\n"
        proc.send_signal(signal.SIGTERM)
        code, log = finish(proc, err)
        assert code == 0, log
        assert "Traceback" not in log
        assert cli.json("show", task_id, "--backend", c.url)["status"] == "done"
    finally:
        c.kill()


GO = """
import sys

import trio


async def wait_for_go(n: int) -> int:
    print("started", n, flush=True)
    await trio.to_thread.run_sync(sys.stdin.readline)
    return n
"""


def test_a_burst_worker_gives_up_on_storage_that_keeps_failing(cli: Cli, tmp_path: Path) -> None:
    # Once the worker runs its task, another process takes the SQLite write
    # lock and never lets go (a frozen process, say): every write of the
    # worker fails with "database is locked", a transient error. Root meets
    # it too, unlike file modes.
    (cli.root / "go.py").write_text(GO)
    db = tmp_path / "q.db"

    async def push() -> None:
        async with tq.open_backend(f"sqlite:///{db}", queue="go:wait_for_go") as backend:
            await backend.push(1)

    trio.run(push)
    url = f"sqlite:///{db}?busy_timeout=0.1"
    argv = ["worker", "go:wait_for_go", "--burst", "--backend", url, "--wait", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioqueue", *argv],
        cwd=cli.root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        read_until(proc.stdout, b"started 1")
        holder.execute("BEGIN IMMEDIATE")
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        began = time.monotonic()
        code, log = finish(proc)
        took = time.monotonic() - began
    finally:
        holder.rollback()
        holder.close()
    assert code == 3, log
    last = log.splitlines()[-1]
    assert last.startswith("trioqueue: error: storage failed to "), log
    assert "for 1s" in last and "giving up" in last and "database is locked" in last
    assert took < 20, took
    assert "Traceback" not in log
    # The task is not lost: it is still leased (QUEUED, or RUNNING if the start
    # mark was written before the lock was taken: the two processes race for
    # it), its lease runs out and the next run takes it again.
    assert cli.status("--backend", f"sqlite:///{db}") in ({"queued": 1}, {"running": 1})
