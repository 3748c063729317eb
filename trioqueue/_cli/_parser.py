"""The ``trioqueue`` command line's syntax: commands, options, and the types of their values.

See ``docs/cli.md`` for every command, option, environment variable and exit code.
"""

from __future__ import annotations

import argparse
import math
import os
import re

from .._builder import DEFAULT_CONCURRENCY
from .._open import DEFAULT_BACKEND
from .._task import Status
from ._schedules import add_parser as add_schedules
from ._web import add_web_parser

__all__ = ["build_parser", "parse_duration"]

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
        help="the database schema holding the tables, on backends that have schemas",
    )
    if queue_help is not None:
        p.add_argument("--queue", metavar="Q", help=queue_help)
    if codec:
        p.add_argument(
            "--codec", choices=("json", "cbor"), default="json", help="payload codec (json)"
        )
    p.add_argument(
        "--wait",
        type=_duration,
        metavar="S",
        help="how long to wait for an unreachable backend, and (worker --burst) for "
        "storage that keeps failing (default: 30s; a worker without --burst waits forever)",
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
    """Return the ``trioqueue`` argument parser (each command's name is ``args.command``)."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="trioqueue",
        description="Durable background jobs for Trio: run workers, push and manage tasks.",
        epilog="See docs/cli.md. Exit status: 0 ok, 1 refused or failed, 2 usage, "
        "3 backend, 4 no such task, 5 task id taken, 6 timed out, 130 interrupted.",
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
        type=_port,
        metavar="P",
        help="serve Prometheus metrics on this port",
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the metrics server listens on (default %(default)s; 0.0.0.0 for all)",
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
    p.add_argument(
        "--if-exists",
        choices=("skip", "raise", "replace_finished"),
        default="skip",
        help="when the id is taken: store nothing (skip, the default), fail with exit "
        "status 5 (raise), or replace a finished task (replace_finished)",
    )

    p = sub.add_parser(
        "status", parents=[_common(queue_help=all_queues)], help="task counts per queue and status"
    )
    p.add_argument("--json", action="store_true", help="print JSON")

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

    p = sub.add_parser("show", parents=[_common(codec=True)], help="show one task")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "retry", parents=[_common(codec=True)], help="run a failed or killed task again now"
    )
    p.add_argument("id", metavar="ID")

    p = sub.add_parser(
        "cancel",
        parents=[_common(codec=True)],
        help="cancel a task that has not finished",
        description="Cancel a task: a pending or failed one at once; a queued or running "
        "one is stopped by the worker holding it.",
    )
    p.add_argument("id", metavar="ID")

    p = sub.add_parser(
        "wait",
        parents=[_common(codec=True)],
        help="wait for a task to finish and print its result",
        description="Wait until the task is done and print its result as JSON; exit 1 if "
        "it ends killed or cancelled.",
    )
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "--timeout",
        type=_duration,
        metavar="S",
        help="give up (exit status 6) after this long (default: wait for as long as it takes)",
    )

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

    p = sub.add_parser(
        "migrate", parents=[_common(codec=True)], help="create or upgrade the storage schema"
    )

    for name, doing, note in (
        ("pause", "stop claiming from", " Tasks running (or prefetched) finish."),
        ("resume", "claim again from", ""),
    ):
        p = sub.add_parser(
            name,
            parents=[_common()],
            help=f"make workers {doing} a queue",
            description=f"Make the workers of QUEUE {doing} it.{note}",
        )
        p.add_argument(
            "queue_name", nargs="?", metavar="QUEUE", help="the queue (default: 'default')"
        )

    p = sub.add_parser("paused", parents=[_common()], help="list the paused queues")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser(
        "workers",
        parents=[_common(queue_help="only workers on this queue (default: all queues)")],
        help="list the live workers",
    )
    p.add_argument(
        "--stale-after",
        type=_duration,
        default=30.0,
        metavar="S",
        help="a worker not seen for this long is dead and not listed (default 30s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    add_web_parser(sub, _common(codec=True))
    add_schedules(sub, _common)
    return parser
