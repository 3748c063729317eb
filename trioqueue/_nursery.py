"""Our internal nurseries: an error from inside comes out as itself, not in an ``ExceptionGroup``.

Trio wraps whatever leaves a nursery in an ``ExceptionGroup``. A user's
``async with open_backend(...)`` body, or one of our background tasks, fails
with one error; nesting it in a group per internal nursery would make every
caller unwrap. ``open_nursery`` re-raises the one error that is not a
cancellation (the others are our own tasks being cancelled because of it);
several real errors stay a group.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_nursery", "sole_error"]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def sole_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """Return the one error in ``group`` once cancellations are set aside, or None."""
    leaves = _leaves(group)
    if len(leaves) == 1:
        return leaves[0]
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    return real[0] if len(real) == 1 else None


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """Open a nursery whose single error (from its body or a child) comes out unwrapped."""
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        error = sole_error(group)
        if error is None:
            raise
    if error is not None:
        raise error  # outside the handler, so its context stays its own
