"""A task's whole life from the command line: cancel, wait, show's times, if-exists, pause, workers.

In process, on stores that persist between commands (a SQLite file and the
toy file driver: see the ``store`` fixture); a worker in a child process where
a task must really run while another command acts on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime
from typing import Any

import pytest
import trio
from cli.cli_project import Cli
from cli.test_subprocess import finish, read_until

import trioqueue as tq
from trioqueue._driver import WorkerRecord


def _on_store(fn: Any) -> Any:
    """Run ``await fn(backend)`` on the ``TRIOQUEUE_BACKEND`` store; return its value."""

    async def main() -> Any:
        async with tq.open_backend(os.environ["TRIOQUEUE_BACKEND"]) as backend:
            return await fn(backend)

    return trio.run(main)


def _claim(task_id: str, *, start: bool) -> str:
    """Claim ``task_id`` as a worker would (QUEUED; RUNNING if ``start``); return the token."""

    async def claim(backend: tq.Backend) -> str:
        claimed = await backend.driver.claim("jobs:send", 10, "tok", 60.0, "w@host:1")
        assert [t.id for t in claimed] == [task_id]
        if start:
            await backend.driver.start([task_id], "tok")
        return "tok"

    result: str = _on_store(claim)
    return result


def _settle_done(task_id: str) -> None:
    async def settle(backend: tq.Backend) -> list[str]:
        return await backend.driver.settle([tq.Outcome(task_id, tq.Status.DONE, b"1")], "tok")

    _on_store(settle)


@pytest.mark.parametrize("start", [False, True], ids=["queued", "running"])
def test_cancel_says_whether_it_cancelled_or_asked_the_worker(
    cli: Cli, store: str, start: bool
) -> None:
    pending = cli.push("jobs:send", '{"to": "a"}', "--delay", "1h")
    assert cli("cancel", pending).out == f"cancelled {pending}\n"
    assert cli.json("show", pending)["status"] == "cancelled"

    held = cli.push("jobs:send", '{"to": "b"}')
    _claim(held, start=start)
    out = cli("cancel", held).out
    if start:
        assert out == (
            f"cancellation requested for {held} (running): the worker running it stops it\n"
        )
    else:
        assert out == (
            f"cancellation requested for {held} (queued): the worker that claimed it cancels it\n"
        )
    assert cli.json("show", held)["status"] == ("running" if start else "queued")
    # Whatever its worker settles, it ends cancelled.
    _settle_done(held)
    assert cli.json("show", held)["status"] == "cancelled"

    err = cli("cancel", held, code=1).err
    assert err == (
        f"trioqueue: error: task {held} is cancelled: only a task that has not finished "
        f"can be cancelled\n"
    )
    assert cli("cancel", "NOPE", code=4).err == "trioqueue: error: no task with id 'NOPE'\n"


def test_wait_prints_the_result_or_fails(cli: Cli, store: str) -> None:
    ok = cli.push("jobs:send", '{"to": "a@example.com"}')
    aborted = cli.push("jobs:send", '{"to": "abort"}')
    cancelled = cli.push("jobs:send", '{"to": "c"}', "--delay", "1h")
    cli("cancel", cancelled)
    cli("worker", "jobs:send", "--burst")

    assert cli("wait", ok).out == '{"sent": "a@example.com", "subject": "hello"}\n'
    err = cli("wait", aborted, code=1).err
    assert err == f"trioqueue: error: task {aborted} ended killed: aborted: no such mailbox\n"
    err = cli("wait", cancelled, code=1).err
    assert err == f"trioqueue: error: task {cancelled} was cancelled\n"
    assert cli("wait", "NOPE", code=4).err == "trioqueue: error: no task with id 'NOPE'\n"

    later = cli.push("jobs:send", '{"to": "d"}', "--delay", "1h")
    err = cli("wait", later, "--timeout", "0.05", code=6).err
    assert err == f"trioqueue: error: task {later} is still pending after 0.05s (--timeout)\n"


def test_show_prints_times_duration_worker_progress_and_traceback(cli: Cli, store: str) -> None:
    reported = cli.push("jobs:report", "3")
    cli("worker", "jobs:report", "--burst")
    shown = cli.json("show", reported)
    assert shown["status"] == "done" and shown["progress"] == {"done": 3, "of": 3}
    assert shown["worker"].startswith("jobs:report@")
    times = {
        k: datetime.fromisoformat(shown[k]) for k in ("created_at", "started_at", "finished_at")
    }
    assert times["created_at"] <= times["started_at"] <= times["finished_at"]
    assert shown["duration"] == pytest.approx(
        (times["finished_at"] - times["started_at"]).total_seconds(), abs=0.002
    )
    lines = dict((*line.split(None, 1), "")[:2] for line in cli("show", reported).out.splitlines())
    assert lines["progress"] == '{"done": 3, "of": 3}'
    assert lines["duration"].endswith("s") and float(lines["duration"][:-1]) >= 0
    assert lines["worker"] == shown["worker"]
    assert lines["finished_at"] == shown["finished_at"]

    failed = cli.push("jobs:send", '{"to": "boom"}', "--max-attempts", "1")
    cli("worker", "jobs:send", "--burst")
    text = cli("show", failed).out
    assert "\ntraceback\n  Traceback (most recent call last):\n" in text
    assert "  RuntimeError: smtp down" in text

    pending = cli.json("show", cli.push("jobs:send", '{"to": "e"}'))
    assert pending["created_at"] is not None
    assert (pending["started_at"], pending["finished_at"], pending["duration"]) == (None,) * 3
    assert (pending["worker"], pending["progress"]) == (None, None)


def test_push_if_exists(cli: Cli, store: str) -> None:
    assert cli.push("jobs:send", '{"to": "a"}', "--id", "order-1") == "order-1"
    # skip (the default) stores nothing new.
    assert cli.push("jobs:send", '{"to": "b"}', "--id", "order-1") == "order-1"
    err = cli("push", "jobs:send", '{"to": "b"}', "--id", "order-1", "--if-exists", "raise",
              code=5).err  # fmt: skip
    assert err == (
        "trioqueue: error: task id 'order-1' is taken by a pending task of queue 'jobs:send'\n"
    )
    # replace_finished keeps a task that has not finished...
    cli("push", "jobs:send", '{"to": "c"}', "--id", "order-1", "--if-exists", "replace_finished")
    assert cli.json("show", "order-1")["args"] == {"to": "a"}
    # ...and replaces one that has.
    cli("worker", "jobs:send", "--burst")
    assert cli.json("show", "order-1")["status"] == "done"
    cli("push", "jobs:send", '{"to": "d"}', "--id", "order-1", "--if-exists", "replace_finished")
    shown = cli.json("show", "order-1")
    assert (shown["status"], shown["args"]) == ("pending", {"to": "d"})
    # An id held in another queue is refused whatever --if-exists says.
    err = cli("push", "jobs:send", '{"to": "e"}', "--id", "order-1", "--queue", "mail", code=5).err
    assert err.startswith("trioqueue: error: task id 'order-1' is taken by a pending task of "
                          "queue 'jobs:send': ids are unique")  # fmt: skip
    assert len(err.splitlines()) == 1


def test_pause_resume_and_paused(cli: Cli, store: str) -> None:
    cli("migrate")
    assert cli("paused").out == "no paused queues\n"
    assert cli.json("paused") == []
    assert cli("pause").out == "paused queue 'default'\n"
    assert cli("pause", "mail").out == "paused queue 'mail'\n"
    assert cli("pause", "jobs:send").out == "paused queue 'jobs:send'\n"
    assert cli("paused").out == "default\njobs:send\nmail\n"
    assert cli.json("paused") == ["default", "jobs:send", "mail"]

    task_id = cli.push("jobs:send", '{"to": "a"}')
    assert "done 0, failed 0, killed 0" in cli("worker", "jobs:send", "--burst").err
    assert cli.json("show", task_id)["status"] == "pending"

    assert cli("resume").out == "resumed queue 'default'\n"
    assert cli("resume", "jobs:send").out == "resumed queue 'jobs:send'\n"
    assert cli.json("paused") == ["mail"]
    assert "done 1, failed 0, killed 0" in cli("worker", "jobs:send", "--burst").err
    assert cli("resume", "mail").out == "resumed queue 'mail'\n"
    assert cli("resume", "never-paused").out == "resumed queue 'never-paused'\n"
    assert cli("paused").out == "no paused queues\n"

    err = cli("pause", "bad\x00queue", code=2).err
    assert err.startswith("trioqueue: error: cannot pause: queue must be 1 to 255 characters")


def _register(*records: WorkerRecord) -> None:
    async def register(backend: tq.Backend) -> None:
        for rec in records:
            await backend.driver.register_worker(rec)

    _on_store(register)


def test_workers_lists_the_live_workers(cli: Cli, store: str) -> None:
    cli("migrate")
    assert cli("workers").out == "no workers\n"
    assert cli.json("workers") == []
    now = datetime.now().timestamp()
    _register(
        WorkerRecord("jobs:send@web1:7", "web1", 7, "default", 8, 2, now - 60),
        WorkerRecord("jobs:mail@web2:9", "web2", 9, "mail", 4, 0, now - 5),
    )
    lines = cli("workers").out.splitlines()
    assert lines[0].split() == ["name", "queue", "running", "started", "last_seen"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["jobs:mail@web2:9", "mail", "0/4"],
        ["jobs:send@web1:7", "default", "2/8"],
    ]
    listed = cli.json("workers", "--queue", "default")
    assert len(listed) == 1
    w = listed[0]
    assert list(w) == [
        "name", "host", "pid", "queue", "concurrency", "running", "started_at", "last_seen",
    ]  # fmt: skip
    assert (w["name"], w["host"], w["pid"], w["concurrency"], w["running"]) == (
        "jobs:send@web1:7", "web1", 7, 8, 2,
    )  # fmt: skip
    started = datetime.fromisoformat(w["started_at"]).timestamp()
    assert started == pytest.approx(now - 60, abs=0.002)
    assert cli("workers", "--queue", "other").out == "no workers on queue 'other'\n"


@pytest.mark.seconds
def test_cancel_stops_a_task_running_in_a_worker_process(cli: Cli, store: str) -> None:
    task_id = cli.push("jobs:stuck", "1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioqueue", "worker", f"{store}:stuck"],
        cwd=cli.root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        read_until(proc.stdout, b"started 1\n")
        (w,) = cli.json("workers")
        assert (w["name"].split("@")[0], w["queue"], w["concurrency"]) == (
            f"{store}:stuck", "jobs:stuck", 10,
        )  # fmt: skip
        assert w["pid"] == proc.pid
        out = cli("cancel", task_id).out
        assert out.startswith(f"cancellation requested for {task_id} (running)")
        # Within one lease extension (a third of the 30 s lease).
        err = cli("wait", task_id, "--timeout", "20", code=1).err
        assert err == f"trioqueue: error: task {task_id} was cancelled\n"
        shown = cli.json("show", task_id)
        assert (shown["status"], shown["attempts"]) == ("cancelled", 1)
        assert shown["worker"] == w["name"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code, log = finish(proc)
    assert code == 0, log
    assert cli.json("workers") == []  # it left the registry as it stopped
