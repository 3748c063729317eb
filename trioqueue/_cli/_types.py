"""The types of the command line's values: durations, counts, ports, statuses."""

from __future__ import annotations

import argparse
import math
import re

from .._task import Status

__all__ = ["parse_duration"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)")

# -- parsing helpers --


def parse_duration(text: str) -> float:
    """Return the seconds in a duration such as ``30s``, ``15m``, ``12h``, ``7d`` or ``1h30m``.

    A bare number is seconds.

    Raises:
      ValueError: if ``text`` is not a duration.
    """
    s = text.strip().lower()
    bare = re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", s)
    if bare:
        return _finite(text, float(s))
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos or not m.group(2):
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
        while pos < len(s) and s[pos] == " ":
            pos += 1
    if not s or pos != len(s):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 15m, 12h, 7d or 1h30m")
    return _finite(text, total)


def _finite(text: str, value: float) -> float:
    if not math.isfinite(value):  # 400 digits make an infinite float
        raise ValueError(f"invalid duration {text!r}: too long to be a number of seconds")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {n}")
    return n


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {value}")
    return value


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {n}")
    return n


def _status(text: str) -> Status:
    try:
        return Status(text.lower())
    except ValueError:
        names = ", ".join(s.value for s in Status)
        raise argparse.ArgumentTypeError(f"unknown status {text!r}: use one of {names}") from None
