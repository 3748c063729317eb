"""``ScheduleRecord``: what storage keeps of a schedule, and the rule of its upsert."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = [
    "PRUNE_AFTER", "PRUNE_PERIODS", "SCHEDULE_FIELDS", "STALE_AFTER", "ScheduleRecord",
    "is_stale", "merge_schedule", "prunable",
]  # fmt: skip

#: Seconds past a record's next tick with no write before it counts as stale:
#: a worker running the schedule rewrites it within moments of each tick.
STALE_AFTER = 300.0
#: A stale record is deleted once it is this many seconds overdue...
PRUNE_AFTER = 7 * 86_400.0
#: ...and this many of its periods (the interval, or the gap between its ticks).
PRUNE_PERIODS = 3


@dataclass(slots=True)
class ScheduleRecord:
    """A schedule as storage holds it; times are POSIX seconds on the driver's clock.

    Every worker running the schedule upserts it by name; whichever instance
    pushed a tick, all of them (and ``trioqueue schedules``) read its last
    tick here.

    Attributes:
      name: The schedule's name (unique in a store).
      queue: The queue its tasks go to.
      expr: The cron expression, or None for an interval.
      interval: The interval in seconds, or None for a cron expression.
      tz: The time zone the cron expression is read in (``"UTC"`` for intervals).
      last_tick: The latest tick pushed, by any instance; None before the first.
      next_tick: The next tick due, as the last writer computed it; None if none.
      updated_at: When the record was last written (set by the driver).
    """

    name: str
    queue: str
    expr: str | None
    interval: float | None
    tz: str
    last_tick: float | None = None
    next_tick: float | None = None
    updated_at: float = 0.0


#: The record's field names, in order: the column lists of the SQL drivers.
SCHEDULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ScheduleRecord))


def merge_schedule(
    stored: ScheduleRecord | None, rec: ScheduleRecord, now: float
) -> ScheduleRecord | None:
    """Return what an upsert of ``rec`` stores over ``stored``, or None to change nothing.

    The reference of ``Driver.record_schedule`` for drivers holding records
    as Python objects: the last tick only moves forward. An upsert whose
    ``last_tick`` is older than the stored one changes nothing (None is the
    oldest); otherwise ``rec`` is stored whole, ``updated_at`` now.
    """
    if stored is not None and _older(rec.last_tick, stored.last_tick):
        return None
    return dataclasses.replace(rec, updated_at=now)


def _older(a: float | None, b: float | None) -> bool:
    if b is None:
        return False
    return a is None or a < b


def _expected(rec: ScheduleRecord) -> float:
    # When a worker running the schedule writes the record next: at its next
    # tick (a write always sets one after its own time), else at the last write.
    return rec.updated_at if rec.next_tick is None else rec.next_tick


def is_stale(rec: ScheduleRecord, now: float) -> bool:
    """Return whether no worker runs the schedule: its next tick is ``STALE_AFTER`` overdue.

    A schedule whose every worker is stopped (or whose name changed: an old
    default name, a renamed schedule) is stale; so is one whose workers cannot
    reach storage. A record with no next tick is stale ``STALE_AFTER`` after
    its last write.
    """
    return now - _expected(rec) > STALE_AFTER


def prunable(rec: ScheduleRecord, now: float) -> bool:
    """Return whether a record is stale for so long that a worker of its queue deletes it.

    That is, overdue by more than ``PRUNE_AFTER`` and ``PRUNE_PERIODS`` of
    its periods (its interval; for a cron expression the gap between its last
    and next tick). A schedule that comes back after that starts afresh, with
    no catch-up.
    """
    if rec.interval is not None:
        period = rec.interval
    elif rec.last_tick is not None and rec.next_tick is not None:
        period = max(0.0, rec.next_tick - rec.last_tick)
    else:
        period = 0.0
    return now - _expected(rec) > max(PRUNE_AFTER, PRUNE_PERIODS * period, STALE_AFTER)
