"""``main``: parse the arguments, run the command under Trio, turn failures into exit statuses."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

from .._errors import BackendError, TaskSinkError
from ._commands import (
    cmd_cancel,
    cmd_migrate,
    cmd_purge,
    cmd_push,
    cmd_retry,
    cmd_show,
    cmd_status,
    cmd_tasks,
    cmd_wait,
)
from ._errors import EXIT_BACKEND, EXIT_FAILED, EXIT_INTERRUPTED, CliError, leaf, one_line
from ._output import redact
from ._parser import build_parser
from ._progress import ProgressLogHandler
from ._queue_commands import cmd_pause, cmd_paused, cmd_resume, cmd_workers
from ._schedules import cmd_schedules
from ._web import cmd_web
from ._worker_command import cmd_worker

__all__ = ["main"]

log = logging.getLogger("trioqueue.cli")

Command = Callable[[argparse.Namespace], Awaitable[int]]

#: Each command's coroutine, by the name ``build_parser`` gives it.
COMMANDS: dict[str, Command] = {
    "worker": cmd_worker,
    "push": cmd_push,
    "status": cmd_status,
    "tasks": cmd_tasks,
    "show": cmd_show,
    "retry": cmd_retry,
    "cancel": cmd_cancel,
    "wait": cmd_wait,
    "purge": cmd_purge,
    "migrate": cmd_migrate,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "paused": cmd_paused,
    "workers": cmd_workers,
    "web": cmd_web,
    "schedules": cmd_schedules,
}


def _setup_logging(level: str) -> None:
    handler = ProgressLogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _fail(code: int, message: str) -> int:
    # The message may quote a driver's error about the URL: no password gets out.
    print(f"trioqueue: error: {redact(message)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trioqueue`` command line; return the exit status.

    Args:
      argv: The arguments (default ``sys.argv[1:]``).

    Returns:
      The exit status (see ``docs/cli.md``).

    Raises:
      SystemExit: for ``--help``, ``--version`` and the argument parser's
        usage errors (status 2), as ``argparse`` does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "codec"):
        args.codec = "json"
    _setup_logging(args.log_level)
    try:
        return trio.run(COMMANDS[args.command], args)
    except KeyboardInterrupt:
        print("trioqueue: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        return _report(exc)


def _report(exc: BaseException) -> int:
    err = leaf(exc)
    if isinstance(err, CliError):
        return _fail(err.code, err.message)
    if isinstance(err, KeyboardInterrupt):
        print("trioqueue: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if isinstance(err, (BackendError, TaskSinkError)):
        return _fail(EXIT_BACKEND, one_line(err))
    if isinstance(err, SystemExit | GeneratorExit):
        raise exc
    if isinstance(err, Exception):
        log.debug("unexpected error", exc_info=err)
        return _fail(
            EXIT_FAILED,
            f"unexpected {one_line(err)} (run with --log-level debug for the traceback)",
        )
    raise exc
