"""A task's life beyond one attempt: ``Retention``, ``WorkerInfo`` and ``Progress``.

A queue's retention is stored in the store (``RetentionRule``); the pure
functions here turn a ``Retention`` into the rule stored and back, and decide
which rule a queue follows (``rule_in_effect``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ._driver import RetentionRule, WorkerRecord
from ._task import Status, from_timestamp

__all__ = [
    "Progress",
    "Retention",
    "WorkerInfo",
    "cutoffs_of",
    "retention_of",
    "retention_text",
    "rule_in_effect",
    "rule_of",
]


def _span(name: str, value: timedelta | None) -> timedelta | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"Retention {name} must be a timedelta or None, got {type(value).__name__}")
    if value < timedelta(0):
        raise ValueError(f"Retention {name} must not be negative")
    return value


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished tasks of a queue are kept before its workers delete them.

    A queue's rule is stored in the store: ``await backend.set_retention(queue,
    Retention(...))`` (or ``None``: keep everything), so that every process on
    every host applies the same one. ``open_backend(url, retention=...)`` is
    the default of the queues with no stored rule (``None``: kept). A worker
    prunes only its own queue, in bounded batches (``batch`` tasks per
    statement), each at a random moment of every ``interval`` seconds, so
    many workers do not prune at once; ``interval`` and ``batch`` are the
    pace of the process that opened the backend and are not stored.

    Attributes:
      done: How long DONE tasks are kept (default 1 day; None: forever).
      killed: How long KILLED tasks are kept (default 7 days).
      cancelled: How long CANCELLED tasks are kept (default 7 days).
      interval: Seconds between a worker's prunes, on average (default 60).
      batch: Tasks deleted per statement (default 1,000).
    """

    done: timedelta | None = timedelta(days=1)
    killed: timedelta | None = timedelta(days=7)
    cancelled: timedelta | None = timedelta(days=7)
    interval: float = 60.0
    batch: int = 1000

    def __post_init__(self) -> None:
        for name in ("done", "killed", "cancelled"):
            _span(name, getattr(self, name))
        if not self.interval > 0:
            raise ValueError("Retention interval must be > 0")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError("Retention batch must be an int >= 1")

    def cutoffs(self, now: float) -> dict[Status, float]:
        """Return, per final status kept for a limited time, the time before which it goes."""
        return cutoffs_of(rule_of(self), now)


def rule_of(retention: Retention | None) -> RetentionRule:
    """Return the rule storage holds for ``retention`` (None: every status kept).

    Raises:
      TypeError: if ``retention`` is neither a ``Retention`` nor None, or one
        of its periods is not a timedelta or None.
      ValueError: if a period is negative.
    """
    if retention is None:
        return RetentionRule(None, None, None)
    if not isinstance(retention, Retention):
        raise TypeError(f"retention must be a Retention or None, got {type(retention).__name__}")
    periods = []
    for name in ("done", "killed", "cancelled"):
        span = _span(name, getattr(retention, name))
        periods.append(None if span is None else span.total_seconds())
    return RetentionRule(*periods)


def retention_of(rule: RetentionRule, pace: Retention | None = None) -> Retention | None:
    """Return a stored rule as a ``Retention`` (None when it keeps everything).

    ``pace`` gives the ``interval`` and ``batch``, which are not stored
    (default: ``Retention``'s).
    """
    periods = (rule.done, rule.killed, rule.cancelled)
    if all(p is None for p in periods):
        return None
    base = pace if pace is not None else Retention()
    done, killed, cancelled = (None if p is None else timedelta(seconds=p) for p in periods)
    return Retention(done, killed, cancelled, interval=base.interval, batch=base.batch)


def rule_in_effect(stored: RetentionRule | None, default: Retention | None) -> RetentionRule:
    """Return the rule a queue follows: its stored rule, else the process's ``default``."""
    return stored if stored is not None else rule_of(default)


def cutoffs_of(rule: RetentionRule, now: float) -> dict[Status, float]:
    """Return, per final status a rule keeps for a limited time, the time before which it goes."""
    periods = {Status.DONE: rule.done, Status.KILLED: rule.killed}
    periods[Status.CANCELLED] = rule.cancelled
    return {s: now - p for s, p in periods.items() if p is not None}


def _period_text(span: timedelta | None) -> str:
    if span is None:
        return "forever"
    seconds = span.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def retention_text(retention: Retention | None) -> str:
    """Return a rule as people read it: ``done 1d, killed 7d, cancelled forever``."""
    if retention is None:
        return "every finished task kept"
    return ", ".join(
        f"{name} {_period_text(getattr(retention, name))}"
        for name in ("done", "killed", "cancelled")
    )


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker, as ``backend.workers()`` lists it.

    Attributes:
      name: Unique name of the running worker (``name@host:pid``).
      host: Host name.
      pid: Process id.
      queue: The queue it consumes.
      concurrency: Tasks it runs at once.
      running: Tasks it held (running or buffered) at its last refresh.
      started_at: When it started (UTC).
      last_seen: Its last refresh (UTC).
    """

    name: str
    host: str
    pid: int
    queue: str
    concurrency: int
    running: int
    started_at: datetime
    last_seen: datetime

    @classmethod
    def from_record(cls, rec: WorkerRecord) -> WorkerInfo:
        """Return the public view of a stored worker entry."""
        return cls(
            rec.name,
            rec.host,
            rec.pid,
            rec.queue,
            rec.concurrency,
            rec.running,
            from_timestamp(rec.started_at),
            from_timestamp(rec.last_seen),
        )


_encode = msgspec.json.encode


class Progress:
    """A handler's way to report how far it got; ask for it by annotation.

    Example::

        async def convert(job: Job, progress: Progress) -> None:
            for i, page in enumerate(job.pages):
                ...
                progress.set({"done": i + 1, "of": len(job.pages)})

    ``set`` never blocks: the value is stored within about a second (with the
    worker's lease extensions) and when the task ends; ``get_task`` shows it
    and ``watch`` yields it.
    """

    __slots__ = ("_id", "_report", "value")

    def __init__(self, id: str, report: Callable[[str, str], None] | None = None) -> None:
        self._id = id
        self._report = report
        #: The last value set (None before).
        self.value: Any = None

    def set(self, value: Any) -> None:
        """Report ``value`` (any JSON-able value: a number, a string, a dict...).

        Raises:
          TypeError: if ``value`` is not JSON-able.
        """
        try:
            text = _encode(value).decode()
        except (TypeError, msgspec.EncodeError) as exc:
            raise TypeError(f"progress must be JSON-able: {exc}") from None
        self.value = value
        if self._report is not None:
            self._report(self._id, text)

    def __repr__(self) -> str:
        return f"<Progress of {self._id}: {self.value!r}>"
