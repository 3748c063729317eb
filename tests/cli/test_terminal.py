"""Terminal manners in real processes: a pipe closed early, the live line on a pty, --watch."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request

import pytest
from cli.cli_project import Cli
from cli.test_subprocess import finish, read_until

from trioqueue._cli import build_parser

TRIOQUEUE = [sys.executable, "-m", "trioqueue"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.seconds
def test_a_pipe_closed_early_is_no_error(cli: Cli) -> None:
    for n in range(300):
        cli.push("jobs:send", f'{{"to": "u{n}"}}', "--delay", "1h")
    path = f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"  # python is ours
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", "python -m trioqueue tasks --limit 300 | head -n 2"],
        cwd=cli.root, env={**_env(), "PATH": path}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(done.stdout.splitlines()) == 2 and done.stdout.startswith("id ")


def _read_pty(fd: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed (Linux: EIO)
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


@pytest.mark.seconds
def test_the_live_line_fits_the_terminal_and_shows_total_rate_and_eta(cli: Cli) -> None:
    (cli.root / "nap.py").write_text(
        "import trio\n\nasync def nap(n: int) -> None:\n    await trio.sleep(0.01)\n"
    )
    for n in range(300):
        cli.push("nap:nap", str(n))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    proc = subprocess.Popen(
        [*TRIOQUEUE, "worker", "nap:nap", "--burst", "--concurrency", "2"],
        cwd=cli.root, env=_env(), stdout=subprocess.DEVNULL, stderr=slave, stdin=slave,
    )  # fmt: skip
    os.close(slave)
    try:
        out = _read_pty(master, proc).decode()
        assert proc.wait(timeout=30) == 0, out
    finally:
        os.close(master)
        proc.kill()
    frames = [f.split("\r\n")[0] for f in out.split("\r\x1b[K")[1:]]
    live = [f for f in frames if " tasks/s" in f and not f.startswith("done ")]
    assert live, out
    assert all(len(f) <= 59 for f in live), max(live, key=len)
    assert all(re.match(r"\d+/300 \(\d+%\) \| \d+ tasks/s", f) for f in live), live
    assert any("ETA" in f for f in live), live
    assert frames[-1].startswith("done 300, failed 0, killed 0 in ")


@pytest.mark.seconds
def test_status_watch_redraws_until_interrupted(cli: Cli) -> None:
    cli.push("jobs:send", '{"to": "a"}')
    proc = subprocess.Popen(
        [*TRIOQUEUE, "status", "--watch", "0.2"], cwd=cli.root, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = read_until(proc.stdout, b"jobs:send")
    seen += read_until(proc.stdout, b"jobs:send")  # drawn a second time
    assert seen.count(b"every 0.2s, ctrl-c to stop") >= 2
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 0, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.seconds
def test_the_metrics_command_serves_the_stores_queues(cli: Cli) -> None:
    cli.push("jobs:send", '{"to": "a"}')
    cli.push("jobs:send", '{"to": "b"}')
    port = _free_port()
    proc = subprocess.Popen(
        [*TRIOQUEUE, "metrics", "--port", str(port), "--interval", "0.2"], cwd=cli.root,
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        read_until(proc.stdout, b"serving the store's metrics")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    assert code == 0, err
    assert 'trioqueue_queue_depth{queue="jobs:send",status="pending"} 2.0' in body
    assert 'status="done"' not in body
    assert re.search(r'trioqueue_queue_oldest_ready_seconds\{queue="jobs:send"\} \d', body)


def test_every_command_has_a_description_and_v_is_the_version(cli: Cli) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        assert sub.description and len(sub.description) > 20, name
        assert name in cli("--help").out
    assert cli("-V").out.startswith("trioqueue ")
