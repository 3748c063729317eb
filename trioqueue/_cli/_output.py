"""What commands print: tables, JSON, timestamps, short texts, and URLs without passwords."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from .._task import Task
from ..drivers import redact_url as redact

__all__ = ["dumps", "iso", "jsonable", "redact", "short", "table", "task_dict", "type_name"]


def type_name(t: Any) -> str:
    """Return a type's name for a message (its repr if it has none)."""
    return getattr(t, "__name__", None) or repr(t)


def jsonable(value: Any) -> Any:
    """Return ``value`` as JSON-able builtins; undecoded bytes become ``{"$bytes": hex}``."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return msgspec.to_builtins(value, enc_hook=repr)


def iso(when: datetime | None) -> str | None:
    """Return ``when`` in ISO 8601, UTC, to the millisecond, with a ``Z``."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        "meta": jsonable(dict(task.meta)),
        "last_error": task.last_error,
        "args": jsonable(task.args),
        "result": jsonable(task.result),
    }


def dumps(value: Any) -> str:
    """Return ``value`` as one line of JSON (non-ASCII kept as is)."""
    return json.dumps(value, ensure_ascii=False)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return ``header`` and ``rows`` as left-aligned columns two spaces apart."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def short(text: str | None, width: int = 60) -> str:
    """Return ``text`` on one line, cut to ``width`` characters with an ellipsis."""
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
