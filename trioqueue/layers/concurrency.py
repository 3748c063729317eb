"""Bound how many tasks run the inner service at once, across every worker sharing the layer."""

from __future__ import annotations

from typing import Any

import trio

from .._service import Service
from .._task import Task

__all__ = ["ConcurrencyLimit", "ConcurrencyLimitLayer"]


class ConcurrencyLimitLayer:
    """Lets at most ``limit`` tasks into the inner service at once.

    One ``trio.CapacityLimiter`` belongs to the layer object, so every worker
    built with the same ``ConcurrencyLimitLayer`` (in one process, one
    ``trio.run``) shares the limit: use it to protect a resource several
    queues call. A task waits for a permit inside its worker slot, so no more
    tasks leave storage than the worker's concurrency plus its prefetch.

    Example::

        db_calls = ConcurrencyLimitLayer(4)
        emails = WorkerBuilder("emails").backend(b1).layer(db_calls).concurrency(20).build(f)
        reports = WorkerBuilder("reports").backend(b2).layer(db_calls).build(g)

    Args:
      limit: Tasks allowed in the inner service at once, ``>= 1``.
    """

    def __init__(self, limit: int) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        self.limiter = trio.CapacityLimiter(limit)

    @property
    def limit(self) -> int:
        """Tasks allowed in at once."""
        return int(self.limiter.total_tokens)

    def layer(self, inner: Service[Any, Any]) -> ConcurrencyLimit:
        """Return a ``ConcurrencyLimit`` service around ``inner`` sharing this layer's limiter."""
        return ConcurrencyLimit(inner, self.limiter)

    def __repr__(self) -> str:
        s = self.limiter.statistics()
        return (
            f"ConcurrencyLimitLayer({self.limit}, "
            f"borrowed={s.borrowed_tokens}, waiting={s.tasks_waiting})"
        )


class ConcurrencyLimit:
    """The service made by ``ConcurrencyLimitLayer``: holds a permit while ``inner`` runs."""

    __slots__ = ("inner", "limiter")

    def __init__(self, inner: Service[Any, Any], limiter: trio.CapacityLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    async def __call__(self, task: Task[Any]) -> Any:
        """Wait for a permit, then run ``inner`` holding it."""
        async with self.limiter:
            return await self.inner(task)

    def __repr__(self) -> str:
        return f"<ConcurrencyLimit {self.limiter!r} -> {self.inner!r}>"
