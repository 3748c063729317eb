"""The ``trioqueue`` command line: run workers, push tasks, inspect and manage storage.

See ``docs/cli.md`` for every command, option, environment variable and exit code.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import os
import re
import socket
import sys
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import trio

from ._backend import Backend
from ._cli_progress import Progress, ProgressLogHandler
from ._codec import CborCodec, Codec, JsonCodec
from ._context import EventKind, WorkerEvent
from ._errors import BackendError, CodecError, HandlerError, TaskSinkError, TrioqueueError
from ._handler import resolve
from ._monitor import Monitor
from ._open import DEFAULT_BACKEND, open_backend
from ._service import Stack
from ._task import Status, Task
from ._worker import DEFAULT_CONCURRENCY, WorkerBuilder

__all__ = ["main"]

log = logging.getLogger("trioqueue.cli")

#: Exit statuses (documented in docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_NOT_FOUND = 4
EXIT_INTERRUPTED = 130

_SCHEMES = ("memory", "sqlite", "postgresql", "postgres")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)")


class _CliError(Exception):
    """A user-facing failure: one line on stderr and an exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
        return float(s)
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
    return total


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


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _codec(name: str) -> Codec:
    return CborCodec() if name == "cbor" else JsonCodec()


# -- handlers --


def load_handler(spec: str) -> Any:
    """Import ``module:name`` (``name`` may be dotted), with the current directory on the path.

    Raises:
      _CliError: naming what could not be imported or found.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise _CliError(EXIT_USAGE, f"expected module:handler, got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise _CliError(
                EXIT_USAGE,
                f"cannot import module {module_name!r}: no module named {exc.name!r} "
                f"(searched the current directory and sys.path)",
            ) from exc
        raise _CliError(
            EXIT_USAGE, f"importing module {module_name!r} failed: {_one_line(exc)}"
        ) from exc
    except Exception as exc:
        raise _CliError(
            EXIT_USAGE, f"importing module {module_name!r} failed: {_one_line(exc)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _CliError(
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
      _CliError: if ``handler`` is not a handler, service or stack.
    """
    try:
        _, args_type = resolve(handler, data={}, context=None)
    except HandlerError as exc:
        args_type = _first_param_type(handler)
        if args_type is None:
            raise _CliError(EXIT_USAGE, f"{spec} is not a handler: {exc}") from exc
    return args_type


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", None) or repr(t)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if text and isinstance(exc, TrioqueueError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- backends --


def _check_url(url: str) -> None:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in _SCHEMES:
        raise _CliError(
            EXIT_BACKEND,
            f"unknown backend URL {_redact(url)!r}: use memory://, sqlite:///path.db "
            f"or postgresql://user@host/db",
        )


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    url: str = args.backend
    _check_url(url)
    if args.schema is None:
        return {}
    if not url.lower().startswith("postgres"):
        raise _CliError(EXIT_USAGE, "--schema applies to PostgreSQL backends only")
    return {"schema": args.schema}


@asynccontextmanager
async def _open(args: argparse.Namespace, *, queue: str | None = None) -> AsyncIterator[Backend]:
    url: str = args.backend
    options = _backend_options(args)
    opened = False
    try:
        async with open_backend(
            url, queue=queue or "default", codec=_codec(args.codec), **options
        ) as backend:
            opened = True
            yield backend
    except Exception as exc:
        if opened:
            raise
        cause = _leaf(exc)
        if isinstance(cause, ImportError) and cause.name not in (None, "trioqueue"):
            msg = f"cannot use backend {_redact(url)!r}: {_one_line(cause)}"
        else:
            msg = f"cannot open backend {_redact(url)!r}: {_one_line(cause)}"
        raise _CliError(EXIT_BACKEND, msg) from exc


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


# -- output --


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return msgspec.to_builtins(value, enc_hook=repr)


def _task_dict(task: Task[Any]) -> dict[str, Any]:
    return {
        "id": str(task.id),
        "queue": task.queue,
        "status": task.status.value,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "priority": task.priority,
        "run_at": _iso(task.run_at),
        "meta": _jsonable(dict(task.meta)),
        "last_error": task.last_error,
        "args": _jsonable(task.args),
        "result": _jsonable(task.result),
    }


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- commands --


async def cmd_status(args: argparse.Namespace) -> int:
    """Print task counts per queue and status."""
    async with _open(args) as backend:
        counts = await backend.counts(queue=args.queue)
    if args.json:
        print(
            _dumps({q: {s.value: c.get(s, 0) for s in Status} for q, c in sorted(counts.items())})
        )
        return EXIT_OK
    header = ["queue", *(s.value for s in Status), "total"]
    rows = []
    for q, by in sorted(counts.items()):
        cells = [str(by.get(s, 0)) for s in Status]
        rows.append([q, *cells, str(sum(by.values()))])
    if not rows:
        print("no tasks" + (f" in queue {args.queue!r}" if args.queue else ""))
        return EXIT_OK
    print(_table(header, rows))
    return EXIT_OK


async def cmd_tasks(args: argparse.Namespace) -> int:
    """Print a page of tasks, newest first."""
    async with _open(args) as backend:
        tasks = await backend.list_tasks(
            queue=args.queue, status=args.status, limit=args.limit, offset=args.offset
        )
    if args.json:
        print(_dumps([_task_dict(t) for t in tasks]))
        return EXIT_OK
    if not tasks:
        print("no tasks")
        return EXIT_OK
    rows = [
        [
            str(t.id),
            t.queue or "",
            t.status.value,
            f"{t.attempts}/{t.max_attempts}",
            _iso(t.run_at) or "",
            _short(t.last_error, 50),
        ]
        for t in tasks
    ]
    print(_table(["id", "queue", "status", "attempts", "run_at", "last_error"], rows))
    return EXIT_OK


async def _get(backend: Backend, task_id: str) -> Task[Any]:
    task = await backend.get_task(task_id)
    if task is None:
        raise _CliError(EXIT_NOT_FOUND, f"no task with id {task_id!r}")
    return task


async def cmd_show(args: argparse.Namespace) -> int:
    """Print one task."""
    async with _open(args) as backend:
        task = await _get(backend, args.id)
    d = _task_dict(task)
    if args.json:
        print(_dumps(d))
        return EXIT_OK
    width = max(len(k) for k in d)
    for key, value in d.items():
        if key in ("args", "result", "meta"):
            value = _dumps(value)
        print(f"{key.ljust(width)}  {'' if value is None else value}")
    return EXIT_OK


async def cmd_retry(args: argparse.Namespace) -> int:
    """Make a failed or killed task run again now."""
    async with _open(args) as backend:
        if not await backend.retry_task(args.id):
            task = await _get(backend, args.id)
            raise _CliError(
                EXIT_FAILED,
                f"task {args.id} is {task.status.value}: only failed or killed tasks can be "
                f"retried",
            )
    print(f"retried {args.id}")
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a pending or failed task."""
    async with _open(args) as backend:
        if not await backend.cancel_task(args.id):
            task = await _get(backend, args.id)
            raise _CliError(
                EXIT_FAILED,
                f"task {args.id} is {task.status.value}: only pending or failed tasks can be "
                f"cancelled",
            )
    print(f"cancelled {args.id}")
    return EXIT_OK


async def cmd_purge(args: argparse.Namespace) -> int:
    """Delete finished tasks older than a duration."""
    async with _open(args) as backend:
        n = await backend.purge(older_than=args.older_than)
    print(f"purged {n} task{'' if n == 1 else 's'}")
    return EXIT_OK


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the storage schema and print its version."""
    url: str = args.backend
    _backend_options(args)
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        print("memory backend: nothing to migrate")
        return EXIT_OK
    if scheme == "sqlite":
        from .backends.sqlite import SCHEMA_VERSION

        async with _open(args):
            pass
        print(f"sqlite schema up to date at version {SCHEMA_VERSION}")
        return EXIT_OK
    try:
        from .backends import postgres
    except ImportError as exc:
        raise _CliError(
            EXIT_BACKEND, f"cannot use backend {_redact(url)!r}: {_one_line(exc)}"
        ) from exc
    try:
        version = await postgres.migrate(url, **_backend_options(args))
    except Exception as exc:
        raise _CliError(
            EXIT_BACKEND, f"cannot migrate {_redact(url)!r}: {_one_line(_leaf(exc))}"
        ) from exc
    print(f"postgresql schema up to date at version {version}")
    return EXIT_OK


async def cmd_push(args: argparse.Namespace) -> int:
    """Validate args against the handler's type and push one task."""
    handler = load_handler(args.handler)
    args_type = args_type_of(handler, args.handler)
    try:
        value = msgspec.json.decode(args.args.encode())
    except msgspec.DecodeError as exc:
        raise _CliError(EXIT_USAGE, f"ARGS_JSON is not valid JSON: {exc}") from exc
    codec = _codec(args.codec)
    try:
        codec.decoder(args_type)(codec.encode(value))
    except CodecError as exc:
        raise _CliError(
            EXIT_USAGE, f"args do not fit {args.handler} ({_type_name(args_type)}): {exc}"
        ) from exc
    async with _open(args, queue=args.queue) as backend:
        try:
            task_id = await backend.push(
                value,
                delay=args.delay,
                priority=args.priority,
                max_attempts=args.max_attempts,
                id=args.id,
            )
        except (TypeError, ValueError, CodecError) as exc:
            raise _CliError(EXIT_USAGE, f"cannot push: {exc}") from exc
    print(task_id)
    return EXIT_OK


def _metrics(port: int) -> Any:
    """Start the metrics HTTP server; return the ``trioqueue.layers.metrics`` module."""
    try:
        from .layers import metrics

        metrics.serve_metrics(port)
    except ImportError as exc:
        raise _CliError(EXIT_USAGE, f"--metrics-port is not available: {exc}") from exc
    except OSError as exc:
        raise _CliError(EXIT_USAGE, f"cannot serve metrics on port {port}: {exc}") from exc
    return metrics


async def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker until stopped by a signal (or, with --burst, until idle)."""
    handler = load_handler(args.handler)
    args_type_of(handler, args.handler)
    metrics = None if args.metrics_port is None else _metrics(args.metrics_port)
    live = args.progress if args.progress is not None else args.burst and sys.stderr.isatty()
    name = f"{args.handler}@{socket.gethostname()}:{os.getpid()}"
    monitor = Monitor(shutdown_timeout=args.shutdown_timeout)

    def stop_when_idle(event: WorkerEvent) -> None:
        if event.kind is EventKind.IDLE:
            monitor.stop()

    async with _open(args, queue=args.queue) as backend:
        builder = WorkerBuilder(name).backend(backend).concurrency(args.concurrency)
        builder.shutdown_timeout(args.shutdown_timeout)
        if metrics is not None:
            builder.layer(metrics.MetricsLayer())
        if args.burst:
            builder.on_event(stop_when_idle)
        try:
            worker = builder.build(handler)
        except HandlerError as exc:
            raise _CliError(EXIT_USAGE, f"{args.handler} is not a handler: {exc}") from exc
        monitor.register(worker)
        progress = Progress(worker, stream=sys.stderr, live=live)
        for h in logging.getLogger().handlers:
            if isinstance(h, ProgressLogHandler):
                h.progress = progress
        log.info("worker %s on %s queue %r", name, _redact(args.backend), backend.queue)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.run)
                if metrics is not None:
                    await nursery.start(metrics.collect_queue_depth, backend)
                await monitor.run()
                nursery.cancel_scope.cancel()
        finally:
            progress.finish()
    return EXIT_INTERRUPTED if monitor.signals_received > 1 else EXIT_OK


# -- the parser --


def _common(*, queue_help: str | None = None, codec: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--backend",
        metavar="URL",
        default=os.environ.get("TRIOQUEUE_BACKEND") or DEFAULT_BACKEND,
        help="backend URL (default: $TRIOQUEUE_BACKEND, else %(default)s)",
    )
    p.add_argument(
        "--schema",
        metavar="NAME",
        help="PostgreSQL schema holding the tables (default: trioqueue)",
    )
    if queue_help is not None:
        p.add_argument("--queue", metavar="Q", help=queue_help)
    if codec:
        p.add_argument(
            "--codec", choices=("json", "cbor"), default="json", help="payload codec (json)"
        )
    p.add_argument(
        "--log-level",
        metavar="L",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        default="WARNING",
        help="logging level: debug, info, warning (default), error",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """Return the ``trioqueue`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="trioqueue",
        description="Durable background jobs for Trio: run workers, push and manage tasks.",
        epilog="See docs/cli.md. Exit status: 0 ok, 1 refused or failed, 2 usage, "
        "3 backend, 4 no such task, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"trioqueue {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    all_queues = "only this queue (default: all queues)"
    one_queue = "queue name (default: 'default')"

    p = sub.add_parser(
        "worker",
        parents=[_common(queue_help=one_queue, codec=True)],
        help="run a worker",
        description="Run a worker for module:handler until SIGINT/SIGTERM (or, with --burst, "
        "until no task is ready).",
    )
    p.add_argument("handler", metavar="module:handler")
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="tasks run at once (default %(default)s)",
    )
    p.add_argument("--burst", action="store_true", help="exit once no task is ready")
    p.add_argument(
        "--shutdown-timeout",
        type=_duration,
        default=30.0,
        metavar="S",
        help="seconds running tasks get to finish after the first signal (default 30)",
    )
    p.add_argument(
        "--metrics-port",
        type=_positive_int,
        metavar="P",
        help="serve Prometheus metrics on this port",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="draw the live progress line even when stderr is not a terminal",
    )
    g.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="never draw the live progress line",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "push",
        parents=[_common(queue_help=one_queue, codec=True)],
        help="push one task",
        description="Check ARGS_JSON against the handler's args type, push it, print the id.",
    )
    p.add_argument("handler", metavar="module:handler")
    p.add_argument("args", metavar="ARGS_JSON")
    p.add_argument("--delay", type=_duration, metavar="S", help="run after this long (30s, 5m)")
    p.add_argument("--priority", type=int, default=0, metavar="P", help="higher runs first")
    p.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=25,
        metavar="N",
        help="attempts allowed in all (default 25)",
    )
    p.add_argument("--id", metavar="ID", help="task id (pushing an existing id stores nothing)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "status", parents=[_common(queue_help=all_queues)], help="task counts per queue and status"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "tasks",
        parents=[_common(queue_help=all_queues, codec=True)],
        help="list tasks, newest first",
    )
    p.add_argument("--status", type=_status, metavar="S", help="only tasks in this status")
    p.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N tasks (default 50)"
    )
    p.add_argument("--offset", type=_count, default=0, metavar="N", help="skip N tasks")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("show", parents=[_common(codec=True)], help="show one task")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser(
        "retry", parents=[_common(codec=True)], help="run a failed or killed task again now"
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser(
        "cancel", parents=[_common(codec=True)], help="cancel a pending or failed task"
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser(
        "purge", parents=[_common(codec=True)], help="delete finished tasks older than a duration"
    )
    p.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="e.g. 30s, 15m, 12h, 7d",
    )
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser(
        "migrate", parents=[_common(codec=True)], help="create or upgrade the storage schema"
    )
    p.set_defaults(func=cmd_migrate)
    return parser


def _setup_logging(level: str) -> None:
    handler = ProgressLogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _fail(code: int, message: str) -> int:
    print(f"trioqueue: error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trioqueue`` command line; return the exit status.

    Args:
      argv: The arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status (see ``docs/cli.md``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "codec"):
        args.codec = "json"
    _setup_logging(args.log_level)
    func: Callable[[argparse.Namespace], Awaitable[int]] = args.func
    try:
        return trio.run(func, args)
    except KeyboardInterrupt:
        print("trioqueue: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        return _report(exc)


def _report(exc: BaseException) -> int:
    leaf = _leaf(exc)
    if isinstance(leaf, _CliError):
        return _fail(leaf.code, leaf.message)
    if isinstance(leaf, KeyboardInterrupt):
        print("trioqueue: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(leaf, (BackendError, TaskSinkError)):
        return _fail(EXIT_BACKEND, _one_line(leaf))
    if isinstance(leaf, SystemExit | GeneratorExit):
        raise exc
    if isinstance(leaf, Exception):
        log.debug("unexpected error", exc_info=leaf)
        return _fail(
            EXIT_FAILED,
            f"unexpected {_one_line(leaf)} (run with --log-level debug for the traceback)",
        )
    raise exc
