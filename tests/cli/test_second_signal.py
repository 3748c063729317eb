"""A second SIGTERM ends the worker command with status 130, whenever it comes.

The worker runs as a real process. The first SIGTERM starts a graceful
shutdown; the second comes after the first was logged, at moments spread
over the whole way out: while the task finishes, while the backend closes,
after the command returned, and while the process's exit hooks run (an exit
hook holds the process until the test lets it go, so no moment is missed
because the process was already gone). Python gives SIGTERM back its
default disposition on the way out, and a signal then must not end the
process by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cli.cli_project import Cli
from cli.test_subprocess import read_until

HOLDING = """
import atexit
import os
import sys


def _hold() -> None:
    print("exit hooks", file=sys.stderr, flush=True)
    sys.stdin.readline()


if os.environ.get("HOLD_AT_EXIT"):  # the worker's process, not the test's own
    atexit.register(_hold)

from jobs import *  # noqa: E402,F403
"""

#: Seconds between the first signal being logged and the second one: at once,
#: while the task finishes, while the backend closes, and once the command returned.
MOMENTS = (0.0, 0.002, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4, 0.8)


def twice(cli: Cli, n: int, wait: float) -> tuple[int, str]:
    """Run a worker, SIGTERM it, SIGTERM it again ``wait`` s later; return its status and log."""
    url = f"sqlite:///run{n}.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "trioqueue", "worker", "holding:slow", "--backend", url],
        cwd=cli.root,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "HOLD_AT_EXIT": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        read_until(proc.stdout, b"started 1")
        proc.send_signal(signal.SIGTERM)
        err = read_until(proc.stderr, b"graceful shutdown")
        time.sleep(wait)
        assert proc.poll() is None, "the process ended before the second signal"
        proc.send_signal(signal.SIGTERM)
        try:
            proc.stdin.write(b"\n")  # the exit hook may let it go
            proc.stdin.flush()
        except BrokenPipeError:  # it exited at the second signal
            pass
        _, rest = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, (err + rest).decode()


@pytest.mark.seconds
def test_a_second_sigterm_exits_130_at_every_moment(cli: Cli) -> None:
    (cli.root / "holding.py").write_text(HOLDING)
    for n in range(len(MOMENTS)):
        cli.push("holding:slow", "1", "--backend", f"sqlite:///run{n}.db")
    sys.modules.pop("holding", None)  # imported by push, to name the queue
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(twice, [cli] * len(MOMENTS), range(len(MOMENTS)), MOMENTS))
    for wait, (code, log) in zip(MOMENTS, results, strict=True):
        assert code == 130, (wait, code, log)
        assert "Traceback" not in log
