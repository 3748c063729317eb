"""``Tick``: the time a schedule's tick was due, as a handler receives it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["EPOCH", "META_SCHEDULE", "META_TICK", "Tick", "at", "iso", "micros", "tick_of"]

#: The meta keys of a task pushed by a schedule: its name, and its tick (``iso``).
META_SCHEDULE = "schedule"
META_TICK = "tick"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros(when: datetime) -> int:
    """Return an aware datetime as integer microseconds since the epoch (exact)."""
    return (when - EPOCH) // _US


def at(us: int) -> datetime:
    """Return integer microseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def iso(us: int) -> str:
    """Return a tick as ISO 8601 UTC text: ``2024-03-31T01:00:00Z`` (microseconds if any)."""
    when = at(us)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{when.microsecond:06d}Z" if when.microsecond else f"{text}Z"


class Tick(datetime):
    """The time (aware, UTC) a schedule's tick was due; a handler asks for it by annotation.

    A catch-up tick runs later than its time, and a retry later still: the
    tick is the time the run stands for, not when it runs. For a task that
    no schedule pushed (pushed by hand, say), it is the task's ``run_at``.

    Example::

        async def report(args: None, tick: Tick) -> None:
            day = tick.astimezone(ZoneInfo("Europe/Paris")).date()
            ...

        WorkerBuilder("reports").backend(b).cron("0 6 * * *", tz="Europe/Paris").build(report)
    """

    __slots__ = ()

    @classmethod
    def of(cls, when: datetime) -> Tick:
        """Return ``when`` (an aware datetime) as a UTC ``Tick``."""
        when = when.astimezone(UTC)
        return cls(
            when.year, when.month, when.day, when.hour, when.minute, when.second,
            when.microsecond, tzinfo=UTC,
        )  # fmt: skip


def tick_of(task: Any) -> Tick:
    """Return the tick of a task a schedule pushed (from its meta), else its ``run_at``."""
    text = task.meta.get(META_TICK) if isinstance(task.meta, dict) else None
    if isinstance(text, str):
        try:
            return Tick.of(datetime.fromisoformat(text))
        except ValueError:
            pass
    return Tick.of(task.run_at)
