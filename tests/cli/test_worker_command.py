"""``trioqueue worker`` in process: a burst run, the summary, and ``--metrics-port``."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import trio
from cli.cli_project import Cli

import trioqueue as tq
from trioqueue import serve_metrics


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

    # One process, two handlers, each on its own queue (module:function).
    result = cli("worker", "jobs:send", "jobs:stack", "--burst", "--concurrency", "2")
    assert "done 2, failed 0, killed 2 in " in result.err
    assert "tasks/s)" in result.err
    assert "\x1b[K" not in result.err  # no live line when stderr is not a terminal
    assert result.out == ""

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


def test_the_log_level_decides_what_is_logged(cli: Cli) -> None:
    killed = cli.push("jobs:send", '{"to": "boom"}', "--max-attempts", "1")
    err = cli("worker", "jobs:send", "--burst").err
    assert "ERROR trioqueue.worker: jobs:send@" in err
    assert f"task {killed} killed at attempt 1: RuntimeError: smtp down" in err
    quiet = cli.push("jobs:send", '{"to": "boom"}', "--max-attempts", "1")
    err = cli("worker", "jobs:send", "--burst", "--log-level", "critical").err
    assert err.splitlines()[-1].startswith("done 0, failed 0, killed 1 in ")
    assert "ERROR" not in err and "banner" in err  # the banner shows at any level
    assert cli.json("show", quiet)["status"] == "killed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_metrics_port_serves_prometheus_metrics(cli: Cli) -> None:
    pytest.importorskip("prometheus_client")
    port = _free_port()
    url = json.dumps(f"http://127.0.0.1:{port}/metrics")
    # Each task scrapes the worker's own endpoint; one at a time, first the first.
    first = cli.push("jobs:scrape", url, "--queue", "metered", "--priority", "1")
    second = cli.push("jobs:scrape", url, "--queue", "metered")
    cli(
        "worker", "jobs:scrape", "--queue", "metered", "--concurrency", "1", "--burst",
        "--metrics-port", str(port),
    )  # fmt: skip
    seen_first = cli.json("show", first)["result"]
    seen_second = cli.json("show", second)["result"]
    assert 'trioqueue_tasks_in_progress{queue="metered"} 1.0' in seen_first
    assert 'trioqueue_attempts_total{outcome="done",queue="metered"} 0.0' in seen_first
    assert 'trioqueue_attempts_total{outcome="done",queue="metered"} 1.0' in seen_second
    # The worker says it is up; the store's depth is `trioqueue metrics`' (one per store).
    assert any(line.startswith("trioqueue_worker_up{") for line in seen_second)
    assert not any(line.startswith("trioqueue_queue_depth") for line in seen_second)
    # The endpoint went with the command.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_metrics_port_in_use_is_a_usage_error(cli: Cli) -> None:
    pytest.importorskip("prometheus_client")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = cli("worker", "jobs:send", "--burst", "--metrics-port", str(port), code=2).err
    assert err.startswith(f"trioqueue: error: cannot serve metrics on 127.0.0.1 port {port}: ")
    assert not (cli.root / "q.db").exists()


@pytest.mark.parametrize(("flags", "host"), [((), "127.0.0.1"), (("--metrics-host", "::1"), "::1")])
def test_the_metrics_endpoint_listens_on_loopback_unless_told(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, flags: tuple[str, ...], host: str
) -> None:
    pytest.importorskip("prometheus_client")
    from trioqueue._cli import _worker_command

    bound: list[str] = []

    def serve_and_record(port: int, registry: Any = None, **kwargs: Any) -> Any:
        server, thread = serve_metrics(port, registry, **kwargs)
        bound.append(server.server_address[0])
        return server, thread

    monkeypatch.setattr(_worker_command, "serve_metrics", serve_and_record)
    cli("worker", "jobs:send", "--burst", "--metrics-port", str(_free_port()), *flags)
    assert bound == [host]
