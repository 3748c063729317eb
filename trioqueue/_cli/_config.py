"""Defaults for every flag from ``TRIOQUEUE_*`` variables and a ``[tool.trioqueue]`` table.

Precedence, highest first: the flag on the command line, the environment
variable ``TRIOQUEUE_<FLAG>`` (``--shutdown-timeout`` is
``TRIOQUEUE_SHUTDOWN_TIMEOUT``), the ``[tool.trioqueue.<command>]`` table of
``pyproject.toml`` in the current directory, its ``[tool.trioqueue]`` table,
then the built-in default. A value that does not fit its flag is a usage
error naming where it came from.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ENV_PREFIX", "NOT_FROM_ENV", "apply_defaults", "env_name", "load_pyproject"]

ENV_PREFIX = "TRIOQUEUE_"

#: Flags that only the command line sets: a variable left in the environment
#: must never confirm a deletion or reuse one task id for every push.
NOT_FROM_ENV = frozenset({"--yes", "--id", "--help", "--version"})

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(flag: str) -> str:
    """Return the environment variable of a flag: ``--pool-size`` -> ``TRIOQUEUE_POOL_SIZE``."""
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def load_pyproject(folder: Path) -> dict[str, Any]:
    """Return the ``[tool.trioqueue]`` table of ``folder/pyproject.toml`` ({} if none).

    Raises:
      ValueError: if the file is not valid TOML or the table is not a table.
    """
    path = folder / "pyproject.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("trioqueue", {})
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [tool.trioqueue] must be a table")
    return table


def _flag(action: argparse.Action) -> str | None:
    longs = [s for s in action.option_strings if s.startswith("--")]
    return longs[0] if longs else None


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    """Return ``value`` (text from a variable, or a TOML value) as the flag would store it."""
    if action.nargs == 0:  # a switch: store_true, store_false, store_const
        if isinstance(value, str):
            low = value.strip().lower()
            if low not in _TRUE | _FALSE:
                raise ValueError(f"{where}: expected true or false, got {value!r}")
            value = low in _TRUE
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return action.const if value else action.default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where}: expected a single value, got {value!r}")
    text = str(value)
    try:
        out = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"{where}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return [out] if isinstance(action, argparse._AppendAction) else out


def _from_table(table: Mapping[str, Any], flag: str) -> tuple[bool, Any]:
    key = flag.lstrip("-")
    for k in (key, key.replace("-", "_")):
        if k in table and not isinstance(table[k], dict):
            return True, table[k]
    return False, None


def apply_defaults(
    commands: Mapping[str, argparse.ArgumentParser],
    *,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Set each command's flag defaults from the config table, then from the environment.

    Args:
      commands: Each command's parser, by name.
      environ: The environment (default ``os.environ``).
      config: The ``[tool.trioqueue]`` table (default: read from the current directory).

    Raises:
      ValueError: naming the variable or key whose value does not fit its flag.
    """
    env = os.environ if environ is None else environ
    table = load_pyproject(Path.cwd()) if config is None else config
    for name, parser in commands.items():
        own = table.get(name, {})
        own = own if isinstance(own, dict) else {}
        for action in parser._actions:
            flag = _flag(action)
            if flag is None or flag in NOT_FROM_ENV:
                continue
            found, value, where = False, None, ""
            for source, label in ((table, "[tool.trioqueue]"), (own, f"[tool.trioqueue.{name}]")):
                hit, v = _from_table(source, flag)
                if hit:
                    found, value, where = True, v, f"pyproject.toml {label} {flag.lstrip('-')}"
            var = env_name(flag)
            if env.get(var, "") != "":  # an empty variable is unset
                found, value, where = True, env[var], var
            if found:
                parser.set_defaults(**{action.dest: _convert(action, value, where)})
