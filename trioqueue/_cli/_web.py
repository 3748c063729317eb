"""``trioqueue web``: serve the web board of a backend until SIGINT or SIGTERM.

The board needs the ``web`` extra; it is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import signal
from functools import partial
from typing import Any

import trio

from .._nursery import open_nursery
from ._backends import open_backend_of
from ._errors import EXIT_OK, EXIT_USAGE, CliError

__all__ = ["add_web_parser", "cmd_web"]

#: The environment variable holding ``user:password`` when ``--auth`` is not given.
AUTH_ENV = "TRIOQUEUE_WEB_AUTH"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free one) to 65535, got {value}")
    return value


def add_web_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add the ``web`` command to ``sub``, with the shared options of ``common``."""
    p = sub.add_parser(
        "web",
        parents=[common],
        help="serve the web board",
        description="Serve a web board of every queue and task of the backend: counts, charts, "
        "tasks, workers; retry, cancel, delete, pause and resume. It binds 127.0.0.1 and "
        "refuses another address without --auth.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", metavar="ADDR", help="address (default %(default)s)"
    )
    p.add_argument(
        "--port",
        type=_port,
        default=8765,
        metavar="P",
        help="port (default %(default)s; 0: any free one)",
    )
    p.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        help=f"HTTP Basic credentials every request must carry (default: ${AUTH_ENV}); "
        "required to bind an address other than loopback",
    )
    p.add_argument("--read-only", action="store_true", help="show everything, allow no action")
    p.add_argument(
        "--refresh",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between reloads of the live pages (default 5; 0: off)",
    )


async def cmd_web(args: argparse.Namespace) -> int:
    """Serve the board; print the URL once listening; stop cleanly on SIGINT or SIGTERM."""
    auth = args.auth or os.environ.get(AUTH_ENV) or None
    try:
        from ..web import Credentials, serve
        from ..web._security import check_binding
    except ImportError as exc:
        raise CliError(
            EXIT_USAGE, f"the web board needs the web extra: pip install 'trioqueue[web]' ({exc})"
        ) from exc
    try:
        credentials = None if auth is None else Credentials.parse(auth)
        check_binding(args.host, credentials)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    async with open_backend_of(args) as backend, open_nursery() as nursery:
        run = partial(
            serve, backend, host=args.host, port=args.port, auth=credentials,
            read_only=args.read_only, refresh=args.refresh,
        )  # fmt: skip
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            urls = await nursery.start(run)
            mode = " (read-only)" if args.read_only else ""
            print(f"trioqueue web: serving on {', '.join(urls)}{mode}", flush=True)
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
    return EXIT_OK


#: The command's name (see ``COMMAND_MODULES`` in ``_parser``).
NAME = "web"
#: The command (see ``COMMAND_MODULES`` in ``_parser``).
run = cmd_web


def add_parser(sub: Any, common: Any) -> None:
    """Add the ``web`` command (``common`` is the parser's ``_common``)."""
    add_web_parser(sub, common(codec=True))
