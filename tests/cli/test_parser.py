"""The command line's syntax: durations, argparse's usage errors, defaults, --version."""

from __future__ import annotations

import pytest
from cli.cli_project import Cli

from trioqueue import DEFAULT_BACKEND
from trioqueue._cli import build_parser, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("1h30m", 5400),
     ("1.5h", 5400), ("2w", 1209600), ("0s", 0)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "7x", "h", "1h 5", "-1s", "5s5", "nan", "inf", "-1", "9" * 400, "9" * 400 + "w"]
)
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "argv",
    [
        ["purge", "--older-than", "7x"],
        ["purge", "--older-than", "nan"],
        ["purge", "--older-than", "9" * 400],
        ["push", "jobs:send", '{"to": "x"}', "--delay", "9" * 400 + "s"],
        ["worker", "jobs:send", "--shutdown-timeout", "inf"],
        ["tasks", "--status", "zombie"],
        ["worker", "jobs:send", "--concurrency", "0"],
        ["worker", "jobs:send", "--metrics-port", "70000"],
        ["tasks", "--offset", "-1"],
        ["push", "jobs:send", '{"to": "x"}', "--if-exists", "overwrite"],
        ["wait", "ID", "--timeout", "soon"],
        ["wait"],
        ["workers", "--stale-after", "-1"],
        ["pause", "a", "b"],
        [],
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    err = cli(*argv, code=2).err
    assert "error:" in err and "usage: trioqueue" in err


def test_usage_errors_say_what_is_wrong(cli: Cli) -> None:
    assert "invalid duration '7x'" in cli("purge", "--older-than", "7x", code=2).err
    assert "unknown status 'zombie'" in cli("tasks", "--status", "zombie", code=2).err
    assert (
        "a port is 1 to 65535, got 70000"
        in cli("worker", "jobs:send", "--metrics-port", "70000", code=2).err
    )


def test_version_and_help(cli: Cli) -> None:
    assert cli("--version").out.startswith("trioqueue ")
    assert "worker" in cli("--help").out


def test_the_backend_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIOQUEUE_BACKEND", "memory://")
    assert build_parser().parse_args(["status"]).backend == "memory://"
    assert build_parser().parse_args(["status", "--backend", "x:"]).backend == "x:"
    monkeypatch.delenv("TRIOQUEUE_BACKEND")
    assert build_parser().parse_args(["status"]).backend == DEFAULT_BACKEND
    monkeypatch.setenv("TRIOQUEUE_BACKEND", "")
    assert build_parser().parse_args(["status"]).backend == DEFAULT_BACKEND


def test_queue_commands_default_to_the_default_queue() -> None:
    assert build_parser().parse_args(["pause"]).queue_name is None
    assert build_parser().parse_args(["resume", "mail"]).queue_name == "mail"
    args = build_parser().parse_args(["workers"])
    assert (args.stale_after, args.queue, args.json) == (30.0, None, False)
    assert build_parser().parse_args(["push", "m:h", "1"]).if_exists == "skip"
    assert build_parser().parse_args(["wait", "ID"]).timeout is None


def test_queue_commands_on_the_memory_backend(cli: Cli) -> None:
    # Each command opens a fresh memory store: what one did, the next cannot see.
    assert cli("pause", "mail", "--backend", "memory://").out == "paused queue 'mail'\n"
    assert cli("paused", "--backend", "memory://").out == "no paused queues\n"
    assert cli.json("workers", "--backend", "memory://") == []
    err = cli("wait", "NOPE", "--backend", "memory://", code=4).err
    assert err == "trioqueue: error: no task with id 'NOPE'\n"
