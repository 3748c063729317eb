"""Whose cancellation ended an attempt: the task's own deadline, or a cancel from outside.

A worker runs each attempt under its slot's cancel scope: the attempt's
boundary. A ``trio.Cancelled`` raised by a deadline inside it (the worker's
``timeout`` on that scope, a ``TimeoutLayer``'s) is the task's timeout. One
that comes from outside the worker (``with trio.move_on_after(...): await
worker.run()``, an outer ``fail_after``, a cancelled nursery) is no failure of
the task: it is released unspent, as at a shutdown. Both kinds say
``source == "deadline"``; what tells them apart is whether the scopes around
the boundary are cancelled too, which is the test Trio itself makes when the
boundary exits to decide whether it catches the ``Cancelled``. The worker and
the layers that report outcomes ask the same question here, so they agree.
"""

from __future__ import annotations

from contextvars import ContextVar

import trio

__all__ = ["cancelled_outside", "enter", "own_deadline"]

_boundary: ContextVar[trio.CancelScope | None] = ContextVar("trioqueue_boundary", default=None)


def enter(scope: trio.CancelScope) -> None:
    """Make ``scope`` the boundary of the attempts run next in this Trio task.

    The worker calls this once per slot scope, not once per attempt.
    """
    _boundary.set(scope)


def cancelled_outside(scope: trio.CancelScope) -> bool:
    """Whether a scope around ``scope`` is cancelled: a ``Cancelled`` inside it goes past it.

    Trio has no public record of this; its ``CancelStatus`` holds it, read
    here the way the scope's exit reads it (``tests/test_boundary.py`` pins
    that it still does). Were a Trio release to move it, this says False: a
    deadline counts as the task's own, as it did before the boundary.
    """
    status = getattr(scope, "_cancel_status", None)
    return getattr(status, "parent_cancellation_is_visible_to_us", False) is True


def own_deadline(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the running attempt's own deadline, not a cancel from outside.

    Args:
      exc: What ended (or is ending) the attempt, or None.

    Returns:
      True for a ``trio.Cancelled`` by a deadline within the attempt's boundary
      while nothing outside the boundary is cancelled; False for an explicit
      cancel (a forced stop, ``cancel_task``) and for anything from outside
      the worker. With no worker around (a service called directly) every
      deadline is the attempt's own.
    """
    if not isinstance(exc, trio.Cancelled) or exc.source != "deadline":
        return False
    scope = _boundary.get()
    return scope is None or not cancelled_outside(scope)
