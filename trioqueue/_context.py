"""What a running worker tells its handlers and observers: context, statistics, events."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ._schedule._stats import ScheduleStatistics

__all__ = ["EventKind", "WorkerContext", "WorkerEvent", "WorkerStatistics"]


class EventKind(enum.Enum):
    """What happened in a worker; see ``WorkerEvent``."""

    START = "start"  #: the worker is claiming tasks
    IDLE = "idle"  #: nothing ready, nothing running
    TASK_DONE = "task_done"  #: a task finished; ``result`` is its return value
    TASK_FAILED = "task_failed"  #: an attempt failed and another is scheduled
    TASK_KILLED = "task_killed"  #: a task was killed (Abort, undecodable, last attempt)
    STOPPING = "stopping"  #: a stop was requested; running tasks are finishing
    STOP = "stop"  #: the worker stopped


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One event, passed to the callbacks of ``WorkerBuilder.on_event``.

    Attributes:
      kind: An ``EventKind``.
      worker: The worker's name.
      task_id: The task concerned, for task events.
      attempt: The attempt number, for task events.
      error: The exception, for TASK_FAILED and TASK_KILLED.
      result: The handler's return value, for TASK_DONE.
    """

    kind: EventKind
    worker: str
    task_id: str | None = None
    attempt: int | None = None
    error: BaseException | None = None
    result: object = None


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    """A snapshot of a worker's state.

    Attributes:
      name: The worker's name.
      concurrency: Tasks it may run at once.
      running: Tasks running now.
      prefetched: Claimed tasks waiting in its prefetch channel.
      done: Tasks finished (DONE) since start.
      failed: Attempts that failed with another attempt scheduled.
      killed: Tasks killed (Abort, undecodable payload, last attempt failed) since start.
      released: Tasks given back unstarted or cancelled at shutdown.
      shutting_down: Whether a stop was requested.
      schedules: One ``ScheduleStatistics`` per schedule (``cron``, ``every``).
    """

    name: str
    concurrency: int
    running: int
    prefetched: int
    done: int
    failed: int
    killed: int
    released: int
    shutting_down: bool
    schedules: tuple[ScheduleStatistics, ...] = ()


class _Running(Protocol):
    """What a ``WorkerContext`` reads of the worker that made it."""

    @property
    def name(self) -> str: ...

    @property
    def is_shutting_down(self) -> bool: ...

    def stop(self) -> None: ...

    def statistics(self) -> WorkerStatistics: ...

    def report_progress(self, id: str, text: str) -> None: ...


class WorkerContext:
    """The running worker, as a handler sees it (ask for it by annotation).

    Example::

        async def handler(job: Job, ctx: WorkerContext) -> None:
            if ctx.is_shutting_down:
                ...
    """

    def __init__(self, worker: _Running) -> None:
        self._worker = worker

    @property
    def name(self) -> str:
        """The worker's name."""
        return self._worker.name

    @property
    def is_shutting_down(self) -> bool:
        """Whether a graceful stop was requested."""
        return self._worker.is_shutting_down

    def stop(self) -> None:
        """Ask the worker to stop gracefully (finish running tasks, release the rest)."""
        self._worker.stop()

    def statistics(self) -> WorkerStatistics:
        """Return the worker's ``WorkerStatistics``."""
        return self._worker.statistics()

    def report_progress(self, id: str, text: str) -> None:
        """Keep a running task's progress (JSON text); ``Progress.set`` calls it."""
        self._worker.report_progress(id, text)

    def __repr__(self) -> str:
        return f"<WorkerContext {self.name!r} shutting_down={self.is_shutting_down}>"


EventCallback = Callable[[WorkerEvent], None]
