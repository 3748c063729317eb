"""``trioqueue retention QUEUE``: show or store how long a queue's finished tasks are kept.

Without options it prints the queue's rule and where it comes from (stored in
the store, or no rule stored: each process's default). ``--done``,
``--killed`` and ``--cancelled`` store a rule (a status not named keeps its
period in the rule the queue follows now), ``--keep`` stores "keep every
finished task", ``--default`` forgets the stored rule. The parser's entry and
the command live here; ``_parser`` and ``_main`` find them by ``NAME``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .._lifecycle import Retention, retention_text
from ._backends import open_backend_of
from ._errors import EXIT_OK, EXIT_USAGE, CliError
from ._output import dumps
from ._types import parse_duration

__all__ = ["NAME", "add_parser", "cmd_retention", "describe", "run"]

_STATUSES = ("done", "killed", "cancelled")
_FOREVER = "forever"


def _period(text: str) -> float | None:
    if text.strip().lower() == _FOREVER:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or {_FOREVER}") from None


def add_parser(sub: Any, common: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the ``retention`` command to the sub-parsers ``sub`` (``common``: the shared options)."""
    p = sub.add_parser(
        "retention",
        parents=[common()],
        help="show or set how long a queue's finished tasks are kept",
        description="Without options, print how long QUEUE's finished tasks are kept and "
        "where that rule comes from. With options, store the queue's rule in the store: "
        "every worker of the queue, on every host, prunes by it (within a minute or so); "
        "a queue with no stored rule follows each process's default (this command's: "
        "done 1d, killed 7d, cancelled 7d).",
    )
    p.add_argument("queue_name", metavar="QUEUE", help="the queue")
    for status in _STATUSES:
        p.add_argument(
            f"--{status}",
            type=_period,
            default=argparse.SUPPRESS,
            metavar="DURATION",
            help=f"keep {status} tasks this long (30m, 12h, 7d) or {_FOREVER}",
        )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keep", action="store_true", help="keep every finished task (store it)")
    g.add_argument(
        "--default",
        action="store_true",
        help="forget the stored rule: the queue follows each process's default again",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _seconds(rule: Retention | None, status: str) -> float | None:
    span: timedelta | None = None if rule is None else getattr(rule, status)
    return None if span is None else span.total_seconds()


def _span(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def describe(queue: str, rule: Retention | None, stored: bool) -> dict[str, Any]:
    """Return what ``retention --json`` prints for a queue's rule."""
    return {
        "queue": queue,
        "source": "stored" if stored else "default",
        **{status: _seconds(rule, status) for status in _STATUSES},
    }


def _line(queue: str, rule: Retention | None, stored: bool) -> str:
    what = retention_text(rule)
    source = (
        "stored in the store"
        if stored
        else "no rule stored: each process's default, this one's shown"
    )
    return f"queue {queue!r}: {what} ({source})"


async def cmd_retention(args: argparse.Namespace) -> int:
    """Print, store or forget a queue's retention."""
    queue: str = args.queue_name
    given = {s: getattr(args, s) for s in _STATUSES if hasattr(args, s)}
    if given and (args.keep or args.default):
        flag = "--keep" if args.keep else "--default"
        raise CliError(EXIT_USAGE, f"{flag} takes no --done, --killed or --cancelled")
    async with open_backend_of(args, read_only=not (given or args.keep or args.default)) as b:
        try:
            if args.keep:
                await b.set_retention(queue, None)
            elif args.default:
                await b.clear_retention(queue)
            elif given:
                now = await b.retention(queue)
                done, killed, cancelled = (
                    _span(given[s] if s in given else _seconds(now, s)) for s in _STATUSES
                )
                await b.set_retention(queue, Retention(done, killed, cancelled))
            rule = await b.retention(queue)
            stored = queue in await b.retentions()
        except (ValueError, OverflowError) as exc:
            raise CliError(EXIT_USAGE, f"cannot set the retention: {exc}") from exc
    if args.json:
        print(dumps(describe(queue, rule, stored)))
    else:
        print(_line(queue, rule, stored))
    return EXIT_OK


#: The command's name (see ``COMMAND_MODULES`` in ``_parser``).
NAME = "retention"
#: The command (see ``COMMAND_MODULES`` in ``_parser``).
run = cmd_retention
