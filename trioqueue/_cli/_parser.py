"""The ``trioqueue`` command line's syntax: commands, options, and the types of their values.

See ``docs/cli.md`` for every command, option, environment variable and exit code.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from .._builder import DEFAULT_CONCURRENCY
from .._open import DEFAULT_BACKEND
from ._config import apply_defaults
from ._types import _count, _duration, _port, _positive_int, _status
from ._types import parse_duration as parse_duration

__all__ = ["COMMAND_MODULES", "build_parser", "parse_duration"]

#: Commands defined in modules of their own (``trioqueue._cli._name``): each
#: module has ``NAME``, ``add_parser(sub, common)`` (``common`` is ``_common``)
#: and ``async run(args) -> int``. A new command is one line here.
COMMAND_MODULES: tuple[str, ...] = ("_schedules", "_web", "_retention")

# -- the parser --


def _common(
    *, queue_help: str | None = None, codec: bool = False, migrate: bool = False
) -> argparse.ArgumentParser:
    """The options every command that opens a backend takes (and, if asked, --queue, --codec)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("backend")
    g.add_argument(
        "--backend",
        metavar="URL",
        default=DEFAULT_BACKEND,
        help="backend URL (default: $TRIOQUEUE_BACKEND, else %(default)s)",
    )
    g.add_argument(
        "--schema",
        metavar="NAME",
        help="the database schema holding the tables, on backends that have schemas",
    )
    g.add_argument(
        "--no-listen",
        dest="listen",
        action="store_false",
        default=None,
        help="poll instead of LISTEN/NOTIFY (PostgreSQL behind PgBouncer in transaction mode)",
    )
    g.add_argument(
        "--pool-size",
        type=_positive_int,
        metavar="N",
        help="connections a backend with a pool uses at most (PostgreSQL: 4)",
    )
    if migrate:
        g.add_argument(
            "--no-migrate",
            dest="migrate",
            action="store_false",
            default=True,
            help="never create or upgrade the schema; refuse one that is missing or old",
        )
    g.add_argument(
        "--wait",
        type=_duration,
        metavar="S",
        help="how long to wait for an unreachable backend, and (worker --burst) for "
        "storage that keeps failing (default: 30s; a worker without --burst waits forever)",
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
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or as one JSON object each",
    )
    return p


def _sub(
    sub: Any, name: str, summary: str, description: str, **common: Any
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[_common(**common)], help=summary, description=description
    )
    return parser


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _filters(p: argparse.ArgumentParser, statuses: str) -> None:
    p.add_argument(
        "--status",
        type=_status,
        action="append",
        metavar="S",
        help=f"only tasks in this status ({statuses}); may be repeated",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--dry-run", action="store_true", help="say how many tasks it would touch; change nothing"
    )


def _worker(sub: Any, one_queue: str) -> None:
    p = _sub(
        sub,
        "worker",
        "run workers for one or more handlers",
        "Run a worker for each module:name until SIGINT/SIGTERM (or, with --burst, until no "
        "task is ready). A name is a handler (its queue is module:name unless --queue), or a "
        "list of handlers, each on its own queue. A module's configure_worker(builder), if "
        "defined, is called before each worker is built (to add data and layers).",
        queue_help=one_queue,
        codec=True,
        migrate=True,
    )
    p.add_argument("handlers", nargs="+", metavar="module:name")
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="tasks run at once, per worker (default %(default)s)",
    )
    p.add_argument("--burst", action="store_true", help="exit once no task is ready")
    p.add_argument(
        "--max-tasks",
        type=_positive_int,
        metavar="N",
        help="stop gracefully after N tasks have finished (then a supervisor restarts it)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=_duration,
        default=30.0,
        metavar="S",
        help="seconds running tasks get to finish after the first signal (default 30)",
    )
    p.add_argument("--lease", type=_duration, metavar="S", help="lease length (default 30s)")
    p.add_argument(
        "--prefetch", type=_positive_int, metavar="N", help="fixed prefetch (default: adaptive)"
    )
    p.add_argument(
        "--timeout", type=_duration, metavar="S", help="each attempt's deadline (default: none)"
    )
    p.add_argument(
        "--poll-interval",
        type=_duration,
        metavar="S",
        help="longest wait between claims without a wake-up (default 1s)",
    )
    p.add_argument(
        "--metrics-port", type=_port, metavar="P", help="serve Prometheus metrics on this port"
    )
    p.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the metrics server listens on (default %(default)s; 0.0.0.0 for all)",
    )
    p.add_argument(
        "--otel", action="store_true", help="trace each task with OpenTelemetry (TraceLayer)"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="draw the live progress line even when stderr is not a terminal",
    )
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never draw the live line"
    )


def _push(sub: Any, one_queue: str) -> None:
    p = _sub(
        sub,
        "push",
        "push one task",
        "Check ARGS_JSON against the handler's args type, push it to the handler's queue "
        "(module:name unless --queue) and print the id. A workflow (Workflow or DagFlow) "
        "starts a run instead and prints the run id.",
        queue_help=one_queue,
        codec=True,
        migrate=True,
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


def _inspect(sub: Any, all_queues: str) -> None:
    p = _sub(sub, "status", "task counts per queue and status",
             "Print how many tasks each queue holds in each status. Never creates storage: "
             "on a store that does not exist yet it says so (exit status 7).",
             queue_help=all_queues)  # fmt: skip
    _json(p)
    p.add_argument(
        "--watch",
        type=_duration,
        nargs="?",
        const=2.0,
        metavar="S",
        help="redraw every S seconds (default 2) until interrupted",
    )
    p = _sub(sub, "tasks", "list tasks, newest first",
             "List tasks, newest first, filtered by queue and status.",
             queue_help=all_queues, codec=True)  # fmt: skip
    p.add_argument("--status", type=_status, metavar="S", help="only tasks in this status")
    p.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N tasks (default 50)"
    )
    p.add_argument("--offset", type=_count, default=0, metavar="N", help="skip N tasks")
    _json(p)
    p = _sub(sub, "show", "show one task",
             "Print every field of one task: times, worker, progress, error, traceback.",
             codec=True)  # fmt: skip
    p.add_argument("id", metavar="ID")
    _json(p)
    p = _sub(sub, "wait", "wait for a task to finish and print its result",
             "Wait until the task is done and print its result as JSON; exit 1 if it ends "
             "killed or cancelled.", codec=True)  # fmt: skip
    p.add_argument("id", metavar="ID")
    p.add_argument(
        "--timeout",
        type=_duration,
        metavar="S",
        help="give up (exit status 6) after this long (default: wait for as long as it takes)",
    )
    p = _sub(sub, "workers", "list the live workers",
             "List the workers that refreshed their entry recently: name, queue, load, times.",
             queue_help="only workers on this queue (default: all queues)")  # fmt: skip
    p.add_argument(
        "--stale-after",
        type=_duration,
        default=30.0,
        metavar="S",
        help="a worker not seen for this long is dead and not listed (default 30s)",
    )
    _json(p)
    p = _sub(sub, "paused", "list the paused queues", "List the paused queues, one a line.")
    _json(p)


def _admin(sub: Any, all_queues: str) -> None:
    for name, doing, which in (
        ("retry", "run again now", "failed, killed"),
        ("cancel", "cancel", "pending, queued, running, failed"),
    ):
        p = _sub(sub, name, f"{doing} one task, or every task a filter selects",
                 f"{doing.capitalize()} the task ID, or (with --status and/or --queue, no ID) "
                 f"every task they select; print how many. Filters ask for confirmation on a "
                 f"terminal.", queue_help=all_queues, codec=True)  # fmt: skip
        p.add_argument("id", metavar="ID", nargs="?")
        _filters(p, which)
    p = _sub(sub, "purge", "delete finished tasks",
             "Delete done, killed and cancelled tasks (or only --status ones) that finished "
             "over --older-than ago; --dry-run counts them; asks on a terminal.",
             queue_help=all_queues, codec=True)  # fmt: skip
    p.add_argument(
        "--older-than",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="only tasks finished this long ago, e.g. 30s, 15m, 12h, 7d (default: any)",
    )
    _filters(p, "done, killed, cancelled")
    p = _sub(sub, "migrate", "create or upgrade the storage schema",
             "Create or upgrade the storage schema and print its version; --sql prints the "
             "statements instead, for a DBA to run.")  # fmt: skip
    p.add_argument("--sql", action="store_true", help="print the DDL; touch nothing")
    _sub(sub, "healthcheck", "exit 0 if the backend answers and its schema is current",
         "For probes: exit 0 when the backend answers and its schema is current, 3 when it "
         "does not answer or its schema is not current, 7 when there is no store yet. "
         "Never writes.")  # fmt: skip
    p = _sub(sub, "metrics", "serve the store's queue metrics for Prometheus",
             "Serve /metrics with the store's queue depth (unfinished tasks) and the age of "
             "each queue's oldest ready task, read every --interval. Run one per store: "
             "workers' --metrics-port serves their own attempts, not these.")  # fmt: skip
    p.add_argument("--port", type=_port, metavar="P", help="the port to serve (required)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address to listen on (default %(default)s; 0.0.0.0 for all)",
    )
    p.add_argument(
        "--interval",
        type=_duration,
        default=5.0,
        metavar="S",
        help="seconds between reads of the store (default 5)",
    )
    for name, doing, note in (
        ("pause", "stop claiming from", " Tasks running (or prefetched) finish."),
        ("resume", "claim again from", ""),
    ):
        p = _sub(sub, name, f"make workers {doing} a queue",
                 f"Make the workers of QUEUE {doing} it.{note}")  # fmt: skip
        p.add_argument(
            "queue_name", nargs="?", metavar="QUEUE", help="the queue (default: 'default')"
        )


def extension(name: str) -> Any:
    """Return the module of a command listed in ``COMMAND_MODULES``."""
    return importlib.import_module(f"trioqueue._cli.{name}")


def build_parser(*, defaults: bool = True) -> argparse.ArgumentParser:
    """Return the ``trioqueue`` argument parser (each command's name is ``args.command``).

    Args:
      defaults: Take flag defaults from ``TRIOQUEUE_*`` variables and
        ``pyproject.toml`` (see ``_config``).

    Raises:
      ValueError: for a variable or configuration value that does not fit its flag.
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="trioqueue",
        description="Durable background jobs for Trio: run workers, push and manage tasks.",
        epilog="Every flag also reads TRIOQUEUE_<FLAG> and [tool.trioqueue] in pyproject.toml. "
        "See docs/cli.md. Exit status: 0 ok, 1 refused or failed, 2 usage, 3 backend, "
        "4 no such task, 5 task id taken, 6 timed out, 7 no store, 130 interrupted.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"trioqueue {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    all_queues = "only this queue (default: all queues)"
    one_queue = "queue name (default: the handler's own, module:name)"
    _worker(sub, one_queue)
    _push(sub, one_queue)
    _inspect(sub, all_queues)
    _admin(sub, all_queues)
    add: Callable[..., Any]
    for module in COMMAND_MODULES:
        add = extension(module).add_parser
        add(sub, _common)
    if defaults:
        apply_defaults(dict(sub.choices))
    return parser
