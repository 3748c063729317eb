"""Log one structured record when an attempt starts and one when it ends."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

import trio

from .._context import ATTEMPT_DEADLINE
from .._errors import Abort, RetryAfter
from .._service import Service
from .._task import Task

__all__ = ["Log", "LogLayer", "outcome_of"]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, Abort | RetryAfter):
        return exc.reason
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def outcome_of(task: Task[Any], exc: BaseException | None) -> str:
    """Name what the worker will make of an attempt that ended with ``exc`` (None: returned).

    Returns:
      ``"done"``; ``"killed"`` (``Abort``, or a failure of the last attempt);
      ``"retry"`` (``RetryAfter``); ``"failed"`` (any other exception, retried
      after the worker's backoff, or cancelled by the worker's deadline);
      ``"released"`` (cancelled by a shutdown: given back to storage unsettled).
    """
    if exc is None:
        return "done"
    if not isinstance(exc, Exception):
        # Cancelled: by a deadline that has passed (the worker's timeout: a
        # failed attempt), or by a shutdown (the task goes back unsettled).
        if not isinstance(exc, trio.Cancelled) or ATTEMPT_DEADLINE.get() > trio.current_time():
            return "released"
        return "killed" if task.attempts >= task.max_attempts else "failed"
    if isinstance(exc, Abort) or task.attempts >= task.max_attempts:
        return "killed"
    return "retry" if isinstance(exc, RetryAfter) else "failed"


class LogLayer:
    """Logs each attempt's start and end through ``logging``, with structured fields.

    Both records carry, as ``extra`` attributes, ``queue``, ``task_id`` and
    ``attempt``; the end record adds ``outcome`` (``done``, ``failed``,
    ``retry``, ``killed`` or ``released``) and ``duration`` (seconds on the
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
            outcome = outcome_of(task, error)
            end = {**extra, "outcome": outcome, "duration": duration}
            if error is None:
                msg = "task %s attempt %d %s in %.3fs"
                logger.log(level, msg, task.id, task.attempts, outcome, duration, extra=end)
            else:
                msg = "task %s attempt %d %s in %.3fs: %s"
                why = _describe(error)
                logger.log(level, msg, task.id, task.attempts, outcome, duration, why, extra=end)
