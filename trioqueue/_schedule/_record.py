"""``ScheduleRecord``: what storage keeps of a schedule, and the rule of its upsert."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["SCHEDULE_FIELDS", "ScheduleRecord", "merge_schedule"]


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
