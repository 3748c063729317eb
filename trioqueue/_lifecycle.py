"""A task's life beyond one attempt: ``Retention``, ``WorkerInfo`` and ``Progress``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ._driver import WorkerRecord
from ._task import Status, from_timestamp

__all__ = ["Progress", "Retention", "WorkerInfo"]


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
    """How long finished tasks are kept before running workers delete them.

    Pass it as ``open_backend(url, retention=Retention(...))``; ``retention=None``
    keeps everything. Workers prune in bounded batches (``batch`` tasks per
    statement), each at a random moment of every ``interval`` seconds, so
    many workers do not prune at once.

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
        spans = {Status.DONE: self.done, Status.KILLED: self.killed}
        spans[Status.CANCELLED] = self.cancelled
        return {s: now - span.total_seconds() for s, span in spans.items() if span is not None}


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
