"""Flag defaults from TRIOQUEUE_* variables and [tool.trioqueue] in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli.cli_project import Cli

from trioqueue._cli import build_parser
from trioqueue._cli._config import NOT_FROM_ENV, env_name


def test_every_flag_has_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in commands.items():
        for action in sub._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            if not longs or longs[0] in NOT_FROM_ENV:
                continue
            flag = longs[0]
            var = env_name(flag)
            if action.nargs == 0:
                monkeypatch.setenv(var, "true")
                want = action.const
            elif action.choices:
                value = sorted(map(str, action.choices))[-1]
                monkeypatch.setenv(var, value)
                want = action.type(value) if callable(action.type) else value
            else:
                raw = "killed" if action.dest == "status" else "7"
                monkeypatch.setenv(var, raw)
                want = action.type(raw) if callable(action.type) else raw
                if action.default is None and action.dest == "status" and name != "tasks":
                    want = [want]  # --status may be repeated: a list
            argv = [name, *(["m:h"] if name == "worker" else [])]
            argv += ["m:h", "1"] if name == "push" else []
            argv += ["ID"] if name in ("show", "wait") else []
            argv += ["Q"] if name == "retention" else []
            if name == "metrics" and flag != "--port":
                argv += ["--port", "9"]
            got = getattr(build_parser().parse_args(argv), action.dest)
            assert got == want, (name, flag, var)
            monkeypatch.delenv(var)


def test_precedence_flag_then_env_then_pyproject(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIOQUEUE_BACKEND")
    (project / "pyproject.toml").write_text(
        '[tool.trioqueue]\nconcurrency = 3\nbackend = "sqlite:///from-toml.db"\n'
        "[tool.trioqueue.worker]\nconcurrency = 5\nburst = true\n"
    )
    args = build_parser().parse_args(["worker", "m:h"])
    assert (args.concurrency, args.burst, args.backend) == (5, True, "sqlite:///from-toml.db")
    monkeypatch.setenv("TRIOQUEUE_BACKEND", "sqlite:///q.db")
    assert build_parser().parse_args(["status"]).backend == "sqlite:///q.db"  # the env wins
    monkeypatch.setenv("TRIOQUEUE_CONCURRENCY", "8")
    assert build_parser().parse_args(["worker", "m:h"]).concurrency == 8
    assert build_parser().parse_args(["worker", "m:h", "--concurrency", "9"]).concurrency == 9


def test_yes_and_id_come_only_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIOQUEUE_YES", "1")
    monkeypatch.setenv("TRIOQUEUE_ID", "same-for-all")
    assert build_parser().parse_args(["purge"]).yes is False
    assert build_parser().parse_args(["push", "m:h", "1"]).id is None


def test_bad_values_are_usage_errors(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIOQUEUE_CONCURRENCY", "many")
    err = cli("status", code=2).err
    assert err == "trioqueue: error: TRIOQUEUE_CONCURRENCY: expected a whole number, got 'many'\n"
    monkeypatch.delenv("TRIOQUEUE_CONCURRENCY")
    (cli.root / "pyproject.toml").write_text("[tool.trioqueue]\nburst = 'often'\n")
    err = cli("status", code=2).err
    assert "pyproject.toml [tool.trioqueue] burst: expected true or false" in err
    (cli.root / "pyproject.toml").write_text("[tool.trioqueue\n")
    assert "not valid TOML" in cli("status", code=2).err
