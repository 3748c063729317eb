"""The worker's live progress line, drawn on a terminal, and its closing summary."""

from __future__ import annotations

import io
import re
import sys

import pytest
from cli.cli_project import Cli


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, and keeps what was written."""

    def isatty(self) -> bool:
        return True


def on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """Make stderr a ``Terminal`` (in the test itself: capsys takes stderr for the call)."""
    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def _push_some(cli: Cli, n: int) -> None:
    for i in range(n):
        cli.push("jobs:send", f'{{"to": "user{i}@example.com"}}')


def test_live_progress_on_a_terminal(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_a_terminal(monkeypatch)
    _push_some(cli, 20)
    cli("worker", "jobs:send", "--burst")
    out = terminal.getvalue()
    assert "\r\x1b[K" in out and "tasks/s |" in out  # the live line was drawn
    summary = out.rsplit("\r\x1b[K", 1)[1]  # erased, then the summary
    assert summary.startswith("done 20, failed 0, killed 0 in "), out
    assert summary.endswith(" tasks/s)\n"), out


def test_no_progress_draws_nothing_but_the_summary(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = on_a_terminal(monkeypatch)
    _push_some(cli, 2)
    cli("worker", "jobs:send", "--burst", "--no-progress")
    assert "\x1b[K" not in terminal.getvalue()
    assert terminal.getvalue().splitlines()[-1].startswith("done 2, failed 0, killed 0 in ")


def test_progress_draws_when_not_a_terminal(cli: Cli) -> None:
    _push_some(cli, 2)
    err = cli("worker", "jobs:send", "--burst", "--progress").err
    assert "\r\x1b[K" in err and "running " in err
    assert err.rsplit("\r\x1b[K", 1)[1].startswith("done 2, failed 0, killed 0 in ")


def test_log_records_erase_the_live_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = on_a_terminal(monkeypatch)
    cli.push("jobs:send", '{"to": "boom"}', "--max-attempts", "1")
    cli("worker", "jobs:send", "--burst")
    out = terminal.getvalue()
    # The line drawn, erased, then the record from the start of the line.
    assert re.search(
        r"tasks/s \| [^\n]*\r\x1b\[K\d{4}-\d\d-\d\d \S+ ERROR trioqueue\.worker: ", out
    )
    assert "smtp down" in out
