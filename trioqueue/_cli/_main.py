"""``main``: parse the arguments, run the command under Trio, turn failures into exit statuses."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from .._errors import BackendError, TaskSinkError
from ._bulk import cmd_cancel, cmd_purge, cmd_retry
from ._commands import cmd_migrate, cmd_push, cmd_show, cmd_status, cmd_tasks, cmd_wait
from ._errors import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    leaf,
    one_line,
)
from ._logs import setup_logging
from ._output import redact
from ._parser import COMMAND_MODULES, build_parser, extension
from ._queue_commands import (
    cmd_healthcheck,
    cmd_metrics,
    cmd_pause,
    cmd_paused,
    cmd_resume,
    cmd_workers,
)
from ._worker_command import cmd_worker, exit_process

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
    "healthcheck": cmd_healthcheck,
    "metrics": cmd_metrics,
}


def _command(name: str) -> Command:
    if name in COMMANDS:
        return COMMANDS[name]
    for module in COMMAND_MODULES:
        ext = extension(module)
        if ext.NAME == name:
            run: Command = ext.run
            return run
    raise KeyError(name)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader of the pipe left (``trioqueue tasks | head``)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file: nothing will flush into a closed pipe
        pass


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

    A reader that closes the pipe early (``trioqueue tasks | head``) ends the
    command quietly with status 0.

    The worker command run as the process's own command line (``argv``
    None) ends the process itself once it returned: see ``exit_process``.

    Raises:
      SystemExit: for ``--help``, ``--version`` and the argument parser's
        usage errors (status 2), as ``argparse`` does.
    """
    try:
        parser = build_parser()
    except ValueError as exc:  # a TRIOQUEUE_* variable or [tool.trioqueue] value
        return _fail(EXIT_USAGE, str(exc))
    args = parser.parse_args(argv)
    if not hasattr(args, "codec"):
        args.codec = "json"
    setup_logging(args.log_level, getattr(args, "log_format", "text"))
    # A command may handle SIGINT and SIGTERM until the process exits (the
    # worker counts a second signal while the process exits): a caller that
    # runs main in its own process (argv given) gets its handlers back.
    handlers = None if argv is None else _signal_handlers()
    try:
        code = trio.run(_command(args.command), args)
        sys.stdout.flush()
        if argv is None and args.command == "worker":
            exit_process(code)  # the worker's signal handling to the very end
        return code
    except KeyboardInterrupt:
        print("trioqueue: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if isinstance(leaf(exc), BrokenPipeError):
            _quiet_stdout()
            return EXIT_OK
        return _report(exc)
    finally:
        if handlers is not None:
            for signum, handler in handlers.items():
                if handler is not None:  # None: set outside Python, left alone
                    signal.signal(signum, handler)


def _signal_handlers() -> dict[int, Any]:
    # Only the main thread may set them; elsewhere there is nothing to restore.
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


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
