"""Log one structured record when an attempt starts and one when it ends."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import trio

from .._boundary import own_deadline
from .._outcome import decide
from .._service import Service
from .._task import Task

__all__ = ["Log", "LogLayer"]


class LogLayer:
    """Logs each attempt's start and end through ``logging``, with structured fields.

    Both records carry, as ``extra`` attributes, ``queue``, ``task_id`` and
    ``attempt``; the end record adds ``outcome`` (``done``, ``failed``,
    ``retry``, ``killed`` or ``released``: the label the worker's own outcome
    policy gives the attempt) and ``duration`` (seconds on the
    Trio clock). ``include_args`` adds ``task_args`` (``args`` is taken by
    ``logging`` itself). When the logger does not take ``level``, the layer
    costs one cached level check per attempt.

    Example::

        WorkerBuilder("mail").backend(b).layer(LogLayer(include_args=True)).build(send)
        # INFO trioqueue.task: task 01J... attempt 1 done in 0.012s

    Args:
      logger: The logger, or its name (default ``"trioqueue.task"``).
      level: The level of both records (default ``logging.INFO``).
      include_args: Whether to add the task's arguments to the records.
    """

    def __init__(
        self,
        logger: logging.Logger | str | None = None,
        *,
        level: int = logging.INFO,
        include_args: bool = False,
    ) -> None:
        if logger is None or isinstance(logger, str):
            logger = logging.getLogger(logger or "trioqueue.task")
        self.logger = logger
        self.level = level
        self.include_args = include_args

    def layer(self, inner: Service[Any, Any]) -> Log:
        """Return a ``Log`` service around ``inner``."""
        return Log(inner, self.logger, self.level, self.include_args)

    def __repr__(self) -> str:
        return f"LogLayer({self.logger.name!r}, level={logging.getLevelName(self.level)})"


class Log:
    """The service made by ``LogLayer``: logs around ``inner``."""

    __slots__ = ("include_args", "inner", "level", "logger")

    def __init__(
        self, inner: Service[Any, Any], logger: logging.Logger, level: int, include_args: bool
    ) -> None:
        self.inner = inner
        self.logger = logger
        self.level = level
        self.include_args = include_args

    def __call__(self, task: Task[Any]) -> Awaitable[Any]:
        """Run ``inner`` between a start record and an end record.

        When the logger does not take the level, this returns ``inner``'s
        awaitable itself: a filtered-out layer adds no coroutine.
        """
        if not self.logger.isEnabledFor(self.level):
            return self.inner(task)
        return self._logged(task)

    async def _logged(self, task: Task[Any]) -> Any:
        logger, level = self.logger, self.level
        extra: dict[str, Any] = {"queue": task.queue, "task_id": task.id, "attempt": task.attempts}
        if self.include_args:
            extra["task_args"] = task.args
        logger.log(level, "task %s attempt %d started", task.id, task.attempts, extra=extra)
        start = trio.current_time()
        error: BaseException | None = None
        try:
            return await self.inner(task)
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = trio.current_time() - start
            verdict = decide(task.attempts, task.max_attempts, error, timed_out=own_deadline(error))
            outcome = verdict.label
            end = {**extra, "outcome": outcome, "duration": duration}
            if verdict.reason is None:
                msg = "task %s attempt %d %s in %.3fs"
                logger.log(level, msg, task.id, task.attempts, outcome, duration, extra=end)
            else:
                msg = "task %s attempt %d %s in %.3fs: %s"
                why = verdict.reason
                logger.log(level, msg, task.id, task.attempts, outcome, duration, why, extra=end)
