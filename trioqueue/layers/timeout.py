"""Give each attempt a deadline; an attempt that runs past it fails with ``TaskTimeout``."""

from __future__ import annotations

from typing import Any

import trio

from .._durations import seconds as check_seconds
from .._errors import TaskTimeout
from .._service import Service
from .._task import Task

__all__ = ["Timeout", "TimeoutLayer"]


class TimeoutLayer:
    """Cancels an attempt after ``seconds`` and fails it with ``TaskTimeout``.

    The deadline is per attempt (a cancel scope around the inner service), so
    a timed-out attempt follows the retry policy like any other failure: put
    this layer inside ``RetryLayer`` to choose the backoff.

    Example::

        ServiceBuilder().layer(RetryLayer()).layer(TimeoutLayer(30)).service(fetch)

    Args:
      seconds: The deadline of one attempt, ``> 0``.

    Raises:
      ValueError: if ``seconds`` is not a positive number.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = check_seconds("seconds", seconds, positive=True, infinite=True)

    def layer(self, inner: Service[Any, Any]) -> Timeout:
        """Return a ``Timeout`` service around ``inner``."""
        return Timeout(inner, self.seconds)

    def __repr__(self) -> str:
        return f"TimeoutLayer({self.seconds:g})"


class Timeout:
    """The service made by ``TimeoutLayer``: runs ``inner`` under a deadline."""

    __slots__ = ("inner", "message", "seconds")

    def __init__(self, inner: Service[Any, Any], seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.message = f"attempt ran past its {seconds:g}s deadline"

    async def __call__(self, task: Task[Any]) -> Any:
        """Run ``inner``, cancelled after ``seconds``.

        Raises:
          TaskTimeout: if the deadline passed before ``inner`` finished.
        """
        with trio.CancelScope(deadline=trio.current_time() + self.seconds):
            return await self.inner(task)
        # Only reached when the deadline cancelled the attempt.
        raise TaskTimeout(self.message)

    def __repr__(self) -> str:
        return f"<Timeout {self.seconds:g}s -> {self.inner!r}>"
