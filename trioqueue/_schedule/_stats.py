"""``ScheduleStatistics``: one schedule of a worker, as ``WorkerStatistics`` shows it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["ScheduleStatistics"]


@dataclass(frozen=True, slots=True)
class ScheduleStatistics:
    """A snapshot of one schedule a worker runs.

    Attributes:
      name: The schedule's name (the middle of its tasks' ids).
      schedule: What it is, as a person reads it (``cron '0 3 * * *' UTC``, ``every 1s``).
      catch_up: Its catch-up mode after downtime: ``latest``, ``all`` or ``none``.
      last_tick: The latest tick pushed, by this worker or another instance (as
        last read from storage); None before the first.
      next_tick: The next tick due; None if none comes.
      pushed: Ticks this worker pushed (each tick is stored once in the store,
        whichever instance pushes it first).
      skipped: Missed ticks its catch-up mode left out (counted up to
        ``MAX_CATCH_UP`` + 1 per look).
    """

    name: str
    schedule: str
    catch_up: str
    last_tick: datetime | None
    next_tick: datetime | None
    pushed: int
    skipped: int
