"""``trioqueue schedules``: list the schedules of a store with their last and next tick.

A schedule whose next tick passed long ago unwritten is listed as stale
(``is_stale``): no worker runs it any more.

The parser's entry (``add_parser``) and the command (``cmd_schedules``) both
live here; ``_parser`` and ``_main`` register them with one line each.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .._schedule._record import ScheduleRecord, is_stale
from .._schedule._scheduler import read_schedules
from ._backends import open_backend_of
from ._errors import EXIT_OK
from ._output import dumps, iso, table

__all__ = ["add_parser", "cmd_schedules"]


def add_parser(sub: Any, common: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the ``schedules`` command to the sub-parsers ``sub`` (``common``: the shared options)."""
    p = sub.add_parser(
        "schedules",
        parents=[common(queue_help="only the schedules pushing to this queue")],
        help="list the schedules (cron and intervals) with their last and next tick",
        description="List the schedules that workers of this store run (WorkerBuilder.cron "
        "and .every): the expression or interval, its zone, the last tick pushed by any "
        "worker and the next tick due, as the last worker to write it computed it. A "
        "schedule whose next tick is over 5 minutes overdue is stale: no worker runs it; "
        "workers of its queue delete it (at once if it has an old default name of a spec "
        "they run, else after 7 days and 3 of its periods).",
    )
    p.add_argument("--json", action="store_true", help="print JSON")


def _when(ts: float | None) -> str | None:
    return None if ts is None else iso(datetime.fromtimestamp(ts, UTC))


def _what(rec: ScheduleRecord) -> str:
    return rec.expr if rec.expr is not None else f"every {rec.interval or 0:g}s"


def schedule_dict(rec: ScheduleRecord, now: float) -> dict[str, Any]:
    """Return the fields ``schedules --json`` prints for one schedule, in their order."""
    return {
        "name": rec.name,
        "queue": rec.queue,
        "stale": is_stale(rec, now),
        "expr": rec.expr,
        "interval": rec.interval,
        "tz": rec.tz,
        "last_tick": _when(rec.last_tick),
        "next_tick": _when(rec.next_tick),
        "updated_at": _when(rec.updated_at),
    }


async def cmd_schedules(args: argparse.Namespace) -> int:
    """Print the schedules of the store: name, queue, schedule, zone, last and next tick."""
    async with open_backend_of(args) as backend:
        records = await read_schedules(backend)
        now = backend.driver.now()
    if args.queue is not None:
        records = [r for r in records if r.queue == args.queue]
    if args.json:
        print(dumps([schedule_dict(r, now) for r in records]))
        return EXIT_OK
    if not records:
        print("no schedules" + (f" on queue {args.queue!r}" if args.queue else ""))
        return EXIT_OK
    rows = [
        [
            r.name, r.queue, "stale" if is_stale(r, now) else "live", _what(r), r.tz,
            _when(r.last_tick) or "-", _when(r.next_tick) or "-",
        ]
        for r in records
    ]  # fmt: skip
    print(table(["name", "queue", "state", "schedule", "tz", "last_tick", "next_tick"], rows))
    return EXIT_OK


#: The command's name (see ``COMMAND_MODULES`` in ``_parser``).
NAME = "schedules"
#: The command (see ``COMMAND_MODULES`` in ``_parser``).
run = cmd_schedules
