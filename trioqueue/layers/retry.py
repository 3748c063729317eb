"""Retry a failed attempt through storage, after a backoff, or kill it at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._backoff import Backoff, Exponential, backoff_from
from .._errors import Abort, RetryAfter, Snooze
from .._outcome import reason
from .._service import Service
from .._task import Task

__all__ = ["Retry", "RetryLayer"]


def _always(exc: BaseException) -> bool:
    return True


class RetryLayer:
    """Turns an attempt's exception into a stored retry (``RetryAfter``) or a kill (``Abort``).

    There is one retry system: storage. This layer only decides *when* the
    next attempt runs (``backoff``) and *whether* there is one
    (``retry_if``); the worker records the failed attempt, and the next one
    runs whenever a worker claims it. ``Abort``, ``RetryAfter`` and
    ``Snooze`` raised inside pass through untouched. The task's ``max_attempts`` still bounds
    the attempts: a retry asked on the last one kills the task.

    Example::

        RetryLayer(Exponential(base=2, max_delay=600), retry_if=lambda e: isinstance(e, OSError))

    Args:
      backoff: A ``Backoff`` or a function of the attempt number (1-based)
        returning seconds; default ``Exponential()`` (with jitter).
      retry_if: Called with the exception; true retries, false kills the task.
    """

    def __init__(
        self,
        backoff: Backoff | Callable[[int], float] | None = None,
        *,
        retry_if: Callable[[Exception], bool] = _always,
    ) -> None:
        self.backoff = Exponential() if backoff is None else backoff_from(backoff)
        self.retry_if = retry_if

    def layer(self, inner: Service[Any, Any]) -> Retry:
        """Return a ``Retry`` service around ``inner``."""
        return Retry(inner, self.backoff, self.retry_if)

    def __repr__(self) -> str:
        return f"RetryLayer({self.backoff!r})"


class Retry:
    """The service made by ``RetryLayer``: runs ``inner`` and classifies its failure."""

    __slots__ = ("backoff", "inner", "retry_if")

    def __init__(
        self,
        inner: Service[Any, Any],
        backoff: Backoff,
        retry_if: Callable[[Exception], bool],
    ) -> None:
        self.inner = inner
        self.backoff = backoff
        self.retry_if = retry_if

    async def __call__(self, task: Task[Any]) -> Any:
        """Run ``inner``; on failure raise ``RetryAfter`` or ``Abort`` from the exception.

        Raises:
          RetryAfter: if ``retry_if(exc)``, after ``backoff.delay(task.attempts)``.
          Abort: if not ``retry_if(exc)``.
        """
        try:
            return await self.inner(task)
        except (Abort, RetryAfter, Snooze):
            raise
        except Exception as exc:
            why = reason(exc)
            if self.retry_if(exc):
                raise RetryAfter(max(0.0, self.backoff.delay(task.attempts)), why) from exc
            raise Abort(why) from exc

    def __repr__(self) -> str:
        return f"<Retry {self.backoff!r} -> {self.inner!r}>"
