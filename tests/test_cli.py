"""The ``trioqueue`` command line, run for real in subprocesses on SQLite files."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import trio

import trioqueue as tq
from trioqueue._cli import parse_duration

HANDLERS = textwrap.dedent(
    """
    from __future__ import annotations

    import pathlib
    from dataclasses import dataclass

    import trio

    from trioqueue import Abort, Data, ServiceBuilder, WorkerContext


    @dataclass
    class Email:
        to: str
        subject: str = "hello"


    async def send(args: Email) -> dict[str, str]:
        if args.to == "abort":
            raise Abort("no such mailbox")
        if args.to == "boom":
            raise RuntimeError("smtp down")
        if args.to == "flaky" and not pathlib.Path("fixed").exists():
            raise Abort("not fixed yet")
        return {"sent": args.to, "subject": args.subject}


    stack = ServiceBuilder().service(send)


    async def needs_state(args: Email, state: Data[dict]) -> None:
        pass


    async def slow(n: int, ctx: WorkerContext) -> str:
        pathlib.Path(f"started-{n}").touch()
        with trio.move_on_after(20):
            while not ctx.is_shutting_down:
                await trio.sleep(0.01)
        return "finished after shutdown" if ctx.is_shutting_down else "never stopped"


    async def stuck(n: int) -> None:
        pathlib.Path(f"started-{n}").touch()
        await trio.sleep(60)


    def not_async(n: int) -> None:
        pass


    VALUE = 42
    """
)


class Cli:
    """Runs ``python -m trioqueue`` in a project folder holding ``jobs.py``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = "sqlite:///q.db"
        self.env = {**os.environ, "TRIOQUEUE_BACKEND": self.url, "PYTHONUNBUFFERED": "1"}

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "trioqueue", *args]

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.argv(*args),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def push(self, *args: str) -> str:
        return self("push", *args).stdout.strip()

    def status(self) -> dict[str, int]:
        counts: dict[str, dict[str, int]] = self.json("status")
        return {s: n for q in counts.values() for s, n in q.items() if n}

    def popen(self, *args: str, stderr: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), cwd=self.root, env=self.env, stderr=stderr, text=True
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "jobs.py").write_text(HANDLERS)
    (tmp_path / "broken.py").write_text("raise RuntimeError('config missing')\n")
    return Cli(tmp_path)


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _library_tasks(url: str) -> list[tq.Task[Any]]:
    async def main() -> list[tq.Task[Any]]:
        async with tq.open_backend(url) as backend:
            return await backend.list_tasks(limit=1000)

    return trio.run(main)


def test_push_then_burst_worker_runs_every_task(cli: Cli) -> None:
    ok = cli.push("jobs:send", '{"to": "a@example.com", "subject": "hi"}')
    aborted = cli.push("jobs:send", '{"to": "abort"}')
    failed = cli.push("jobs:send", '{"to": "boom"}', "--max-attempts", "1")
    via_stack = cli.push("jobs:stack", '{"to": "b@example.com"}')
    assert cli.status() == {"pending": 4}

    proc = cli("worker", "jobs:send", "--burst", "--concurrency", "2")
    assert "done 2, failed 0, killed 2 in " in proc.stderr
    assert "tasks/s)" in proc.stderr
    assert "\x1b[K" not in proc.stderr  # no live line when stderr is not a terminal
    assert proc.stdout == ""

    assert cli.status() == {"done": 2, "killed": 2}
    shown = cli.json("show", ok)
    assert shown["status"] == "done"
    assert shown["result"] == {"sent": "a@example.com", "subject": "hi"}
    assert shown["attempts"] == 1
    assert cli.json("show", aborted)["last_error"] == "aborted: no such mailbox"
    assert "smtp down" in cli.json("show", failed)["last_error"]
    # The library sees the same storage.
    by_id = {t.id: t for t in _library_tasks(f"sqlite:///{cli.root}/q.db")}
    assert by_id[via_stack].status is tq.Status.DONE
    assert by_id[via_stack].result == {"sent": "b@example.com", "subject": "hello"}


def test_push_options_and_default_backend(cli: Cli) -> None:
    del cli.env["TRIOQUEUE_BACKEND"]
    before = time.time()
    task_id = cli.push(
        "jobs:send", '{"to": "x"}', "--id", "order-7", "--queue", "mail",
        "--delay", "1h", "--priority", "5", "--max-attempts", "3",
    )  # fmt: skip
    assert task_id == "order-7"
    assert (cli.root / "trioqueue.db").exists()  # the default backend
    shown = cli.json("show", "order-7")
    assert (shown["queue"], shown["priority"], shown["max_attempts"]) == ("mail", 5, 3)
    stamp = datetime.fromisoformat(shown["run_at"].replace("Z", "+00:00")).timestamp()
    assert before + 3600 - 5 < stamp < time.time() + 3600 + 5
    # Pushing the same id again stores nothing new.
    assert cli.push("jobs:send", '{"to": "y"}', "--id", "order-7", "--queue", "mail") == "order-7"
    assert cli.json("tasks")[0]["args"] == {"to": "x"}
    assert len(cli.json("tasks")) == 1
    # A delayed task is not ready: a burst worker on its queue exits at once.
    proc = cli("worker", "jobs:send", "--queue", "mail", "--burst")
    assert "done 0, failed 0, killed 0" in proc.stderr
    # --backend overrides the environment.
    cli.env["TRIOQUEUE_BACKEND"] = "sqlite:///other.db"
    assert cli.json("status") == {}
    assert cli.json("status", "--backend", "sqlite:///trioqueue.db") == {
        "mail": {"pending": 1, "queued": 0, "running": 0, "done": 0, "failed": 0,
                 "killed": 0, "cancelled": 0},
    }  # fmt: skip


def test_admin_commands(cli: Cli) -> None:
    flaky = cli.push("jobs:send", '{"to": "flaky"}')
    later = cli.push("jobs:send", '{"to": "later"}', "--delay", "2h")
    cli("worker", "jobs:send", "--burst")
    assert cli.status() == {"killed": 1, "pending": 1}

    table = cli("status").stdout.splitlines()
    assert table[0].split() == [
        "queue", "pending", "queued", "running", "done", "failed", "killed", "cancelled", "total",
    ]  # fmt: skip
    assert table[1].split() == ["default", "1", "0", "0", "0", "0", "1", "0", "2"]
    assert cli.json("status", "--queue", "nothing-here") == {}

    listed = cli("tasks", "--status", "killed").stdout
    assert flaky in listed and later not in listed and "aborted: not fixed yet" in listed
    assert [t["id"] for t in cli.json("tasks")] == [later, flaky]  # newest first
    assert [t["id"] for t in cli.json("tasks", "--limit", "1", "--offset", "1")] == [flaky]

    shown = cli("show", flaky).stdout
    assert "status        killed" in shown and '{"to": "flaky"}' in shown

    # retry a killed task: it runs again and, now fixed, succeeds.
    assert cli("retry", flaky).stdout.strip() == f"retried {flaky}"
    assert cli.json("show", flaky)["status"] == "pending"
    (cli.root / "fixed").touch()
    cli("worker", "jobs:send", "--burst")
    done = cli.json("show", flaky)
    assert (done["status"], done["attempts"]) == ("done", 2)
    err = cli("retry", flaky, code=1).stderr
    assert (
        err
        == f"trioqueue: error: task {flaky} is done: only failed or killed tasks can be retried\n"
    )

    assert cli("cancel", later).stdout.strip() == f"cancelled {later}"
    assert cli.json("show", later)["status"] == "cancelled"
    assert "only pending or failed tasks can be cancelled" in cli("cancel", later, code=1).stderr

    assert cli("purge", "--older-than", "1h").stdout.strip() == "purged 0 tasks"
    assert cli("purge", "--older-than", "0s").stdout.strip() == "purged 2 tasks"
    assert cli.status() == {}
    assert cli("status").stdout.strip() == "no tasks"
    assert cli("tasks").stdout.strip() == "no tasks"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["push", "jobs", "{}"], 2, "expected module:handler, got 'jobs'"),
        (["push", "nomod:send", "{}"], 2, "cannot import module 'nomod': no module named 'nomod'"),
        (["push", "broken:send", "{}"], 2,
         "importing module 'broken' failed: RuntimeError: config missing"),
        (["worker", "jobs:nope"], 2, "module 'jobs' has no attribute 'nope'"),
        (["push", "jobs:not_async", "1"], 2, "handler not_async is not async"),
        (["push", "jobs:VALUE", "1"], 2, "jobs:VALUE is not a handler"),
        (["push", "jobs:send", "{bad"], 2, "ARGS_JSON is not valid JSON"),
        (["push", "jobs:send", '{"subject": "x"}'], 2,
         "args do not fit jobs:send (Email): payload does not fit Email: "
         "Object missing required field `to`"),
        (["push", "jobs:send", '{"to": 5}'], 2, "Expected `str`, got `int` - at `$.to`"),
        (["worker", "jobs:needs_state", "--burst"], 2,
         "jobs:needs_state is not a handler: parameter 'state' of handler needs_state asks for "
         "Data[dict]"),
        (["status", "--backend", "redis://localhost"], 3, "unknown backend URL 'redis://localhost'"),
        (["tasks", "--backend", "sqlite:///no-such-dir/q.db"], 3,
         "cannot open backend 'sqlite:///no-such-dir/q.db'"),
        (["status", "--backend", "postgresql://postgres@127.0.0.1:1/nowhere"], 3,
         "cannot open backend 'postgresql://postgres@127.0.0.1:1/nowhere'"),
        (["status", "--schema", "jobs"], 2, "--schema applies to postgresql backends only"),
        (["show", "NOPE"], 4, "no task with id 'NOPE'"),
        (["retry", "NOPE"], 4, "no task with id 'NOPE'"),
        (["cancel", "NOPE"], 4, "no task with id 'NOPE'"),
    ],
)  # fmt: skip
def test_user_errors(cli: Cli, argv: list[str], code: int, message: str) -> None:
    proc = cli(*argv, code=code)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trioqueue: error: "), proc.stderr
    assert message in lines[0]
    assert not (cli.root / "no-such-dir").exists()


def test_a_handler_needing_state_is_still_pushable(cli: Cli) -> None:
    # Its args type comes from the first annotation; only a worker can provide Data[...].
    cli.push("jobs:needs_state", '{"to": "x"}')
    cli("push", "jobs:needs_state", '{"nope": 1}', code=2)
    assert cli.status() == {"pending": 1}


def test_usage_errors_exit_2(cli: Cli) -> None:
    for argv in (
        ["purge", "--older-than", "7x"],
        ["tasks", "--status", "zombie"],
        ["worker", "jobs:send", "--concurrency", "0"],
        [],
    ):
        proc = cli(*argv, code=2)
        assert "error:" in proc.stderr and "usage: trioqueue" in proc.stderr
    assert "invalid duration '7x'" in cli("purge", "--older-than", "7x", code=2).stderr
    assert cli("--version").stdout.startswith("trioqueue ")
    assert "worker" in cli("--help").stdout


@pytest.mark.skipif(not Path(sys.executable).with_name("trioqueue").exists(), reason="no script")
def test_console_script(cli: Cli) -> None:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("trioqueue")), "status", "--json"],
        cwd=cli.root, env=cli.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout.strip()) == (0, "{}")


def test_sigterm_lets_the_running_task_finish(cli: Cli) -> None:
    ids = [cli.push("jobs:slow", str(n)) for n in range(3)]
    log = (cli.root / "worker.log").open("w")
    worker = cli.popen("worker", "jobs:slow", "--concurrency", "1", stderr=log)
    try:
        _wait_for(lambda: any(cli.root.glob("started-*")), "a task to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        log.close()
    stderr = (cli.root / "worker.log").read_text()
    assert "Traceback" not in stderr
    assert "received SIGTERM: graceful shutdown" in stderr
    assert "done 1, failed 0, killed 0" in stderr
    tasks = {t["id"]: t for t in cli.json("tasks")}
    (started,) = [p.name.removeprefix("started-") for p in cli.root.glob("started-*")]
    finished = ids[int(started)]
    assert tasks[finished]["status"] == "done"
    assert tasks[finished]["result"] == "finished after shutdown"
    # The others were never started: released (their attempt uncounted), not lost.
    for task_id in set(ids) - {finished}:
        assert (tasks[task_id]["status"], tasks[task_id]["attempts"]) == ("pending", 0)
    assert cli.status() == {"done": 1, "pending": 2}


def test_second_signal_cancels_and_releases(cli: Cli) -> None:
    task_id = cli.push("jobs:stuck", "1")
    path = cli.root / "worker.log"
    log = path.open("w")
    worker = cli.popen(
        "worker", "jobs:stuck", "--shutdown-timeout", "60", "--log-level", "info", stderr=log
    )
    try:
        _wait_for((cli.root / "started-1").exists, "the task to start")
        worker.send_signal(signal.SIGINT)
        _wait_for(lambda: "graceful shutdown" in path.read_text(), "the first signal")
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 130
    finally:
        worker.kill()
        log.close()
    assert "cancelling running tasks" in path.read_text()
    shown = cli.json("show", task_id)
    assert (shown["status"], shown["attempts"]) == ("pending", 0)


def test_live_progress_on_a_terminal(cli: Cli) -> None:
    for n in range(20):
        cli.push("jobs:send", json.dumps({"to": f"user{n}@example.com"}))
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            cli.argv("worker", "jobs:send", "--burst"),
            cwd=cli.root, env=cli.env, stderr=slave, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(master)
    out = b"".join(chunks).decode()
    assert "\r\x1b[K" in out and "tasks/s |" in out  # the live line was drawn
    summary = out.rsplit("\r\x1b[K", 1)[1]  # erased, then the summary
    assert summary.startswith("done 20, failed 0, killed 0 in "), out


def test_migrate_sqlite_and_memory(cli: Cli) -> None:
    out = cli("migrate").stdout
    assert out.startswith("sqlite schema up to date at version ")
    assert (cli.root / "q.db").exists()
    assert cli("migrate", "--backend", "memory://").stdout.strip() == (
        "memory backend: nothing to migrate"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1h30m", 5400),
     ("1.5h", 5400), ("2w", 1209600), ("0s", 0)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7x", "h", "1h 5", "-1s", "5s5"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_metrics_port_serves_prometheus_metrics(cli: Cli) -> None:
    pytest.importorskip("prometheus_client")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli.push("jobs:send", '{"to": "m@example.com"}')
    log = (cli.root / "worker.log").open("w")
    worker = cli.popen("worker", "jobs:send", "--metrics-port", str(port), stderr=log)
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    try:
        _wait_for(lambda: 'trioqueue_tasks_total{outcome="done",queue="default"} 1.0' in scrape(),
                  "the done task in the metrics")  # fmt: skip
        assert 'trioqueue_queue_depth{queue="default",status="pending"}' in scrape()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        log.close()
    assert cli.status() == {"done": 1}


@pytest.fixture
def pg_url() -> Iterator[str]:
    from pg_support import fresh_database

    with fresh_database() as url:
        yield url


@pytest.mark.postgres
def test_postgres_migrate_push_and_work(cli: Cli, pg_url: str) -> None:
    cli.env["TRIOQUEUE_BACKEND"] = pg_url
    assert cli("migrate").stdout.startswith("postgresql schema up to date at version ")
    out = cli("migrate", "--schema", "jobs_cli").stdout
    assert out.startswith("postgresql schema up to date at version ")
    task_id = cli.push("jobs:send", '{"to": "pg@example.com"}', "--schema", "jobs_cli")
    assert cli.status() == {}  # another schema
    proc = cli("worker", "jobs:send", "--burst", "--schema", "jobs_cli")
    assert "done 1, failed 0, killed 0" in proc.stderr
    shown = cli.json("show", task_id, "--schema", "jobs_cli")
    assert (shown["status"], shown["result"]["sent"]) == ("done", "pg@example.com")
