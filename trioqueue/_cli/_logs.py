"""What the command line logs, and how: text or JSON lines, the banner, one line per task end.

``--log-format json`` writes each record as one JSON object with ``time``,
``level``, ``logger``, ``message`` and the record's structured fields
(``task_id``, ``outcome``, ``duration``, ``attempt``, ``queue``, ``worker``…).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .._context import EventKind, WorkerEvent
from .._errors import Snooze
from .._service import Service
from .._task import Task
from ._progress import ProgressLogHandler

__all__ = ["BANNER", "TASKS", "JsonFormatter", "TaskLog", "setup_logging"]

#: The start banner's logger: it always writes, whatever ``--log-level``.
BANNER = logging.getLogger("trioqueue.cli.banner")
#: One INFO record per task end (``--log-level info``).
TASKS = logging.getLogger("trioqueue.cli.tasks")

#: The attributes every ``LogRecord`` has: anything else was passed as ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON with its ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as a JSON object on one line."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Send every record at ``level`` or above to stderr, as text or JSON lines."""
    handler = ProgressLogHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    BANNER.setLevel(logging.INFO)


class TaskLog:
    """Times each attempt (as the outermost layer) and logs one INFO line when it ends.

    The line comes from the worker's event (done, failed, killed), so the
    outcome is the worker's verdict; a snooze is logged by the layer itself.

    Args:
      queue: The worker's queue, a field of each record.
    """

    #: Attempts whose start is kept at most (a cancelled one has no end event).
    LIMIT = 10_000

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._started: dict[str, float] = {}

    def layer(self, inner: Service[Task[Any], Any]) -> Service[Task[Any], Any]:
        """Return a service that notes when each attempt of ``inner`` starts."""
        started = self._started

        async def timed(task: Task[Any]) -> Any:
            if len(started) >= self.LIMIT:
                started.pop(next(iter(started)))
            started[task.id] = time.monotonic()
            try:
                return await inner(task)
            except Snooze as exc:
                self._line(task.id, "snoozed", task.attempts, f" for {exc.seconds:g}s")
                raise

        return timed

    def on_event(self, event: WorkerEvent) -> None:
        """Log the end of a task (an ``on_event`` callback)."""
        outcome = _OUTCOMES.get(event.kind)
        if outcome is None or event.task_id is None:
            return
        why = "" if event.error is None else f": {type(event.error).__name__}: {event.error}"
        self._line(event.task_id, outcome, event.attempt, why, worker=event.worker)

    def _line(
        self, task_id: str, outcome: str, attempt: int | None, tail: str, worker: str = ""
    ) -> None:
        t0 = self._started.pop(task_id, None)
        duration = None if t0 is None else round(time.monotonic() - t0, 6)
        took = "" if duration is None else f" in {duration:.3f}s"
        TASKS.info(
            "task %s %s%s (attempt %s, queue %s)%s",
            task_id,
            outcome,
            took,
            attempt,
            self.queue,
            tail,
            extra={
                "task_id": task_id,
                "outcome": outcome,
                "duration": duration,
                "attempt": attempt,
                "queue": self.queue,
                "worker": worker or None,
            },
        )


_OUTCOMES = {
    EventKind.TASK_DONE: "done",
    EventKind.TASK_FAILED: "failed",
    EventKind.TASK_KILLED: "killed",
}
