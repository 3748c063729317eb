"""What commands print: tables, JSON, timestamps, short texts, and URLs without passwords.

Stored data (ids, queue names, errors, meta, payloads) comes from whoever
pushed it, so nothing of it reaches the terminal raw: control characters,
bidirectional overrides and line separators are written as escapes
(``\\x1b``, ``\\u202e``) in tables and ``show``, and as JSON escapes in JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from .._lifecycle import WorkerInfo
from .._task import Task
from ..drivers import redact_url as redact

__all__ = [
    "dumps",
    "duration",
    "escape",
    "iso",
    "jsonable",
    "redact",
    "short",
    "table",
    "task_dict",
    "type_name",
    "worker_dict",
]

#: What a terminal may act on rather than show: C0 and C1 controls and DEL,
#: bidirectional embeddings, overrides and isolates, line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")

#: Integers beyond 64 bits are shown in hex: their decimal form may be too
#: long for Python to write (``sys.set_int_max_str_digits``), and for JSON readers.
_INT_LIMIT = 1 << 64


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(m: re.Match[str]) -> str:
    char = m.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """Return ``text`` with every control character written as an escape (``\\x1b``)."""
    return _UNSAFE.sub(_escape_one, text)


def _json_escape_one(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"


def type_name(t: Any) -> str:
    """Return a type's name for a message (its repr if it has none)."""
    return getattr(t, "__name__", None) or repr(t)


def jsonable(value: Any) -> Any:
    """Return ``value`` as JSON-able builtins; undecoded bytes become ``{"$bytes": hex}``.

    Integers beyond 64 bits become ``{"$int": "0x…"}``.
    """
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return _big_ints(msgspec.to_builtins(value, enc_hook=repr))


def _big_ints(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -_INT_LIMIT < value < _INT_LIMIT else {"$int": hex(value)}
    if isinstance(value, list):
        return [_big_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _big_ints(v) for k, v in value.items()}
    return value


def iso(when: datetime | None) -> str | None:
    """Return ``when`` in ISO 8601, UTC, to the millisecond, with a ``Z``."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration(task: Task[Any]) -> float | None:
    """Return the seconds from the start of a final task's last attempt to its end, or None.

    None for a task that is not final, or that never started.
    """
    if not task.status.is_final or task.started_at is None or task.finished_at is None:
        return None
    return round(max(0.0, (task.finished_at - task.started_at).total_seconds()), 3)


def task_dict(task: Task[Any]) -> dict[str, Any]:
    """Return the fields that ``show`` and ``tasks --json`` print, in their order."""
    return {
        "id": str(task.id),
        "queue": task.queue,
        "status": task.status.value,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "priority": task.priority,
        "run_at": iso(task.run_at),
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "duration": duration(task),
        "worker": task.worker,
        "progress": jsonable(task.progress),
        "meta": jsonable(dict(task.meta)),
        "last_error": task.last_error,
        "args": jsonable(task.args),
        "result": jsonable(task.result),
        "traceback": task.traceback,
    }


def worker_dict(info: WorkerInfo) -> dict[str, Any]:
    """Return the fields that ``workers --json`` prints for one worker, in their order."""
    return {
        "name": info.name,
        "host": info.host,
        "pid": info.pid,
        "queue": info.queue,
        "concurrency": info.concurrency,
        "running": info.running,
        "started_at": iso(info.started_at),
        "last_seen": iso(info.last_seen),
    }


def dumps(value: Any) -> str:
    """Return ``value`` as one line of JSON (non-ASCII kept as is, controls escaped)."""
    return _UNSAFE.sub(_json_escape_one, json.dumps(value, ensure_ascii=False))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return ``header`` and ``rows`` as left-aligned columns two spaces apart (escaped)."""
    header = [escape(h) for h in header]
    rows = [[escape(c) for c in row] for row in rows]
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def short(text: str | None, width: int = 60) -> str:
    """Return ``text`` on one line, escaped, cut to ``width`` characters with an ellipsis."""
    if not text:
        return ""
    text = escape(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"
