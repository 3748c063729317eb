"""What a schedule is, when its ticks fall, and which due ticks to push: pure functions.

Cron expressions are parsed and walked by ``cronsim`` in the schedule's zone
(``zoneinfo``); intervals are whole multiples of their length since the
epoch, so every instance computes the same ticks. Times are integer
microseconds since the epoch (UTC), exact in both directions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .._durations import seconds as check_seconds
from ._record import ScheduleRecord, is_stale, prunable
from ._tick import at, iso, micros

__all__ = [
    "CATCH_UP", "MAX_CATCH_UP", "ON_TIME", "CatchUp", "Plan", "Schedule", "default_name", "plan",
    "to_forget", "to_micros",
]  # fmt: skip

CatchUp = Literal["latest", "all", "none"]
CATCH_UP: tuple[str, ...] = ("latest", "all", "none")

#: The most missed ticks ``catch_up="all"`` pushes after downtime (the latest ones).
MAX_CATCH_UP = 100
#: Seconds a tick may be late and still count as on time (``catch_up="none"`` pushes it).
ON_TIME = 60.0
#: The longest schedule name (its task ids hold it and the tick: at most 255 characters).
MAX_NAME = 200

_SECOND = 1_000_000
#: How far before the walk back's earliest tick the walk forward starts, for a
#: zone-pinned cron expression: cronsim may place a tick in a DST gap
#: differently going back than going forward.
_DST_MARGIN = 3 * 3600 * _SECOND
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _zone(tz: object) -> tzinfo:
    if not isinstance(tz, str) or not tz:
        raise TypeError(f"tz must be an IANA time-zone name such as 'Europe/Paris', got {tz!r}")
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {tz!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def default_name(queue: str, spec: str, encoded_args: bytes | None) -> str:
    """Return a schedule's default name: ``<queue>:<spec>``, then ``#<digest>`` for args.

    ``spec`` is ``cron:<expr>`` (``@<tz>`` outside UTC) or ``every:<seconds>s``;
    ``encoded_args`` the codec's bytes of the args, None when the schedule has
    none (no suffix). The digest is the first 12 hex digits of their SHA-256,
    so two schedules of one spec with other args get other names. A name
    longer than ``MAX_NAME`` keeps its start and ends with ``~`` and a digest
    of the whole. Nothing of the process (pid, host, worker name) is in it.
    """
    name = f"{queue}:{spec}"
    if encoded_args is not None:
        name += "#" + hashlib.sha256(encoded_args).hexdigest()[:12]
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"{name[: MAX_NAME - 13]}~{digest}"
    return name


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a schedule name must be a str, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise ValueError(f"a schedule name must be 1 to {MAX_NAME} characters without NUL")
    return name


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule of a worker: a cron expression or an interval, and its task's args.

    Made by ``WorkerBuilder.cron`` and ``WorkerBuilder.every`` (through
    ``Schedule.cron`` and ``Schedule.every``, which check every argument).
    """

    name: str
    args: Any
    expr: str | None
    interval: int | None  # microseconds
    tz: str
    catch_up: CatchUp
    zone: tzinfo
    pinned: bool = False  # cron at fixed hours in a zone with DST: cronsim's Debian rules
    spec: str = ""  # ``cron:<expr>[@<tz>]`` or ``every:<seconds>s``: the default name's middle
    given_name: bool = True  # False: ``name`` is the spec until ``identified`` makes it the default

    @classmethod
    def cron(cls, expr: str, *, args: Any, tz: str, catch_up: str, name: str | None) -> Schedule:
        """Return a cron schedule; without ``name``, its spec until ``identified`` names it.

        Raises:
          ValueError: for an expression cronsim refuses, an unknown zone or catch-up mode.
          TypeError: for arguments of the wrong type.
        """
        if not isinstance(expr, str):
            raise TypeError(f"a cron expression must be a str, got {type(expr).__name__}")
        zone = _zone(tz)
        text = " ".join(expr.split())
        fields = _ALIASES.get(text.lower(), text)
        try:
            CronSim(fields, at(0).astimezone(zone))
        except CronSimError as exc:
            raise ValueError(
                f"bad cron expression {expr!r}: {exc} (five fields: minute hour day-of-month "
                f"month day-of-week, an optional leading seconds field, or @hourly, @daily...)"
            ) from None
        if catch_up not in CATCH_UP:
            raise ValueError(f"catch_up must be one of {CATCH_UP}, got {catch_up!r}")
        where = "" if tz.upper() == "UTC" else f"@{tz}"
        up: CatchUp = catch_up  # type: ignore[assignment]
        parts = fields.split()
        pinned = zone is not UTC and len(parts) == 5 and "*" not in parts[0][:1] + parts[1][:1]
        given, spec = name is not None, f"cron:{text}{where}"
        name = _check_name(name) if given else spec
        return cls(name, args, fields, None, tz, up, zone, pinned, spec, given)

    @classmethod
    def every(cls, seconds: float, *, args: Any, name: str | None) -> Schedule:
        """Return an interval schedule (catch-up ``"latest"``); without ``name``, as for ``cron``.

        Raises:
          ValueError: for an interval under a millisecond, or not finite.
          TypeError: for arguments of the wrong type.
        """
        value = check_seconds("every", seconds, positive=True)
        interval = round(value * _SECOND)
        if interval < 1000:
            raise ValueError(f"every must be at least 0.001 seconds, got {seconds!r}")
        given, spec = name is not None, f"every:{value:g}s"
        name = _check_name(name) if given else spec
        return cls(name, args, None, interval, "UTC", "latest", UTC, False, spec, given)

    def identified(self, queue: str, encoded_args: bytes | None) -> Schedule:
        """Return this schedule with its identity in a store: its given name, else the default.

        The default is ``default_name(queue, spec, encoded_args)``: the same
        queue, spec and args give the same name in every process, on every
        host, after every restart.
        """
        if self.given_name:
            return self
        return dataclasses.replace(self, name=default_name(queue, self.spec, encoded_args))

    def describe(self) -> str:
        """Return the schedule as a person reads it (``cron '0 3 * * *' UTC``, ``every 1s``)."""
        if self.interval is not None:
            return f"every {self.interval / _SECOND:g}s"
        return f"cron {self.expr!r} {self.tz}"

    def tick_id(self, tick: int) -> str:
        """Return the task id of a tick: ``sched:<name>:<tick, ISO 8601 UTC>``."""
        return f"sched:{self.name}:{iso(tick)}"

    def record(self, queue: str, last: int | None, next: int | None) -> ScheduleRecord:
        """Return the ``ScheduleRecord`` of this schedule with these ticks."""
        return ScheduleRecord(
            self.name,
            queue,
            self.expr,
            None if self.interval is None else self.interval / _SECOND,
            self.tz,
            None if last is None else last / _SECOND,
            None if next is None else next / _SECOND,
        )

    # -- ticks --

    def _forward(self, after: int) -> Iterator[int]:
        # The ticks after ``after``, in order, each strictly later than the one before.
        assert self.expr is not None
        latest = after
        try:
            for when in CronSim(self.expr, at(after).astimezone(self.zone)):
                t = micros(when)
                if t > latest:  # a start in a repeated hour can give an earlier one first
                    latest = t
                    yield t
        except StopIteration:  # pragma: no cover - cronsim ends a walk this way
            return

    def next_after(self, after: int) -> int | None:
        """Return the first tick strictly after ``after`` (microseconds), or None if none comes."""
        if self.interval is not None:
            return (after // self.interval + 1) * self.interval
        return next(self._forward(after), None)

    def due(self, after: int, now: int, limit: int) -> tuple[list[int], bool]:
        """Return the latest ``limit`` ticks in ``(after, now]``, and whether more were due."""
        if now <= after:
            return [], False
        if self.interval is not None:
            first, last = after // self.interval + 1, now // self.interval
            start = max(first, last - limit + 1)
            ticks = [k * self.interval for k in range(start, last + 1)]
            return ticks, last - first + 1 > limit
        # Walk back from now at most limit + 1 ticks, then forward from there.
        assert self.expr is not None
        earliest, n = now, 0
        try:
            for when in CronSim(self.expr, at(now + 1).astimezone(self.zone), reverse=True):
                t = micros(when)
                if t <= after or n > limit:
                    break
                earliest, n = t, n + 1
        except StopIteration:  # pragma: no cover - cronsim ends a walk this way
            pass
        start = max(after, earliest - (_DST_MARGIN if self.pinned else 0) - _SECOND)
        ticks = []
        for t in self._forward(start):
            if t > now:
                break
            if t > after:
                ticks.append(t)
        return ticks[-limit:], len(ticks) > limit


@dataclass(frozen=True, slots=True)
class Plan:
    """What a schedule does at one look: the ticks to push, how many it skips, the next tick."""

    push: list[int]
    skipped: int
    more: bool
    next: int | None


def plan(schedule: Schedule, after: int, now: int) -> Plan:
    """Decide which ticks in ``(after, now]`` to push, by the schedule's catch-up mode.

    ``after`` is the latest tick already dealt with (pushed by any instance,
    or passed while this one looked). "latest" pushes the latest due tick;
    "all" the due ticks, at most ``MAX_CATCH_UP`` (the latest ones); "none"
    the latest due tick if it is at most ``ON_TIME`` seconds late, else none.
    """
    due, more = schedule.due(after, now, MAX_CATCH_UP)
    if schedule.catch_up == "all":
        push = due
    elif not due:
        push = []
    elif schedule.catch_up == "none" and now - due[-1] > ON_TIME * _SECOND:
        push = []
    else:
        push = due[-1:]
    return Plan(push, len(due) - len(push), more, schedule.next_after(max(after, now)))


def to_micros(seconds: float) -> int:
    """Return POSIX seconds as integer microseconds (ticks are whole microseconds)."""
    return math.floor(seconds * _SECOND + 0.5)


def to_forget(
    records: list[ScheduleRecord], queue: str, schedules: tuple[Schedule, ...], now: float
) -> list[ScheduleRecord]:
    """Return the records of ``queue`` that a worker running ``schedules`` deletes.

    Only records of the worker's own queue, never one of its schedules' own.
    A stale record of the spec (expression or interval, and zone) of one of
    them, named ``<something>:<spec>`` as releases that took the worker's
    name for the default named it (with the host and pid, under ``trioqueue
    worker``), is superseded and goes at once; any other stale record (a
    default of the same spec with other args, a name given by hand) goes
    once ``prunable``.
    """
    names = {s.name for s in schedules}
    return [
        r
        for r in records
        if r.queue == queue
        and r.name not in names
        and (prunable(r, now) or (is_stale(r, now) and _superseded(r, queue, schedules)))
    ]


def _superseded(rec: ScheduleRecord, queue: str, schedules: tuple[Schedule, ...]) -> bool:
    for s in schedules:
        mine = s.record(queue, None, None)
        if (rec.expr, rec.interval, rec.tz) != (mine.expr, mine.interval, mine.tz):
            continue
        base = default_name(queue, s.spec, None)
        if rec.name == base or rec.name.startswith(base + "#"):
            continue  # a default of today: this schedule, or one with other args
        if rec.name.endswith(":" + s.spec):
            return True  # an old default, made from a worker's name
    return False
