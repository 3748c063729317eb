"""Shared pieces of the command line: exit statuses, errors, handlers, backends, output."""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
import typing
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from ._backend import Backend
from ._codec import CborCodec, Codec, JsonCodec
from ._errors import HandlerError, TrioqueueError
from ._handler import resolve
from ._open import open_backend
from ._handler import Stack
from ._task import Task

__all__ = [
    "EXIT_BACKEND",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "args_type_of",
    "backend_options",
    "check_url",
    "dumps",
    "iso",
    "jsonable",
    "leaf",
    "load_handler",
    "make_codec",
    "one_line",
    "open_backend_of",
    "redact",
    "short",
    "table",
    "task_dict",
    "type_name",
]

#: Exit statuses (documented in docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

_SCHEMES = ("memory", "sqlite", "postgresql", "postgres")


class CliError(Exception):
    """A user-facing failure: one line on stderr and an exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def redact(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: no password to hide in it
        return url
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def make_codec(name: str) -> Codec:
    return CborCodec() if name == "cbor" else JsonCodec()


# -- handlers --


def load_handler(spec: str) -> Any:
    """Import ``module:name`` (``name`` may be dotted), with the current directory on the path.

    Raises:
      CliError: naming what could not be imported or found.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(EXIT_USAGE, f"expected module:handler, got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise CliError(
                EXIT_USAGE,
                f"cannot import module {module_name!r}: no module named {exc.name!r} "
                f"(searched the current directory and sys.path)",
            ) from exc
        raise CliError(
            EXIT_USAGE, f"importing module {module_name!r} failed: {one_line(exc)}"
        ) from exc
    except Exception as exc:
        raise CliError(
            EXIT_USAGE, f"importing module {module_name!r} failed: {one_line(exc)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CliError(
                EXIT_USAGE, f"module {module_name!r} has no attribute {attr!r}"
            ) from None
    return obj


def _first_param_type(handler: Any) -> Any:
    """Return the args type of an async handler function from its first annotation.

    Used when the handler asks for worker-provided parameters (``Data[...]``,
    ``WorkerContext``) that cannot be resolved outside a worker. Returns
    ``None`` if ``handler`` is not an async function.
    """
    while isinstance(handler, Stack):
        handler = handler.handler
    if not inspect.iscoroutinefunction(handler):
        return None
    params = list(inspect.signature(handler).parameters.values())
    if not params:
        return None
    try:
        hints = typing.get_type_hints(handler, include_extras=True)
    except Exception:
        return None
    hint = hints.get(params[0].name, Any)
    if hint is Task or typing.get_origin(hint) is Task:
        args = typing.get_args(hint)
        return args[0] if args else Any
    return hint


def args_type_of(handler: Any, spec: str) -> Any:
    """Return the type a handler's args decode into (as the worker would).

    Raises:
      CliError: if ``handler`` is not a handler, service or stack.
    """
    try:
        _, args_type = resolve(handler, data={}, context=None)
    except HandlerError as exc:
        args_type = _first_param_type(handler)
        if args_type is None:
            raise CliError(EXIT_USAGE, f"{spec} is not a handler: {exc}") from exc
    return args_type


def type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or repr(t)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if text and isinstance(exc, TrioqueueError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- backends --


def check_url(url: str) -> None:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in _SCHEMES:
        raise CliError(
            EXIT_BACKEND,
            f"unknown backend URL {redact(url)!r}: use memory://, sqlite:///path.db "
            f"or postgresql://user@host/db",
        )


def backend_options(args: argparse.Namespace) -> dict[str, Any]:
    url: str = args.backend
    check_url(url)
    if args.schema is None:
        return {}
    if not url.lower().startswith("postgres"):
        raise CliError(EXIT_USAGE, "--schema applies to PostgreSQL backends only")
    return {"schema": args.schema}


@asynccontextmanager
async def open_backend_of(
    args: argparse.Namespace, *, queue: str | None = None
) -> AsyncIterator[Backend]:
    url: str = args.backend
    options = backend_options(args)
    opened = False
    try:
        async with open_backend(
            url, queue=queue or "default", codec=make_codec(args.codec), **options
        ) as backend:
            opened = True
            yield backend
    except Exception as exc:
        if opened:
            raise
        cause = leaf(exc)
        if isinstance(cause, ImportError) and cause.name not in (None, "trioqueue"):
            msg = f"cannot use backend {redact(url)!r}: {one_line(cause)}"
        else:
            msg = f"cannot open backend {redact(url)!r}: {one_line(cause)}"
        raise CliError(EXIT_BACKEND, msg) from exc


def leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# -- output --


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return msgspec.to_builtins(value, enc_hook=repr)


def task_dict(task: Task[Any]) -> dict[str, Any]:
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


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
