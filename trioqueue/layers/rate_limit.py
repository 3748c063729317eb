"""Start at most ``n`` tasks in any ``per``-second window, across workers sharing the layer."""

from __future__ import annotations

from collections import deque
from typing import Any

import trio

from .._durations import seconds
from .._service import Service
from .._task import Task

__all__ = ["RateLimit", "RateLimitLayer"]


class _Bucket:
    """``n`` tokens; a token spent at time t comes back at t + per (on the Trio clock)."""

    __slots__ = ("lock", "n", "per", "spent")

    def __init__(self, n: int, per: float) -> None:
        self.n = n
        self.per = per
        self.spent: deque[float] = deque()
        self.lock = trio.Lock()

    async def take(self) -> None:
        async with self.lock:  # FIFO: waiters get tokens in arrival order
            spent = self.spent
            if len(spent) >= self.n:
                await trio.sleep_until(spent[0] + self.per)
                spent.popleft()
            spent.append(trio.current_time())


class RateLimitLayer:
    """Lets at most ``n`` tasks start the inner service in any ``per``-second window.

    A token bucket of ``n`` tokens in which each spent token comes back
    ``per`` seconds after it was spent: bursts of up to ``n`` go through at
    once, and no window of ``per`` seconds ever sees more than ``n`` starts.
    Waiters are served first come, first served. The bucket belongs to the
    layer object, so workers built with the same layer share the rate. A
    task waits inside its worker slot, so waiting holds no more tasks out of
    storage than the worker's concurrency plus its prefetch.

    Example::

        WorkerBuilder("api").backend(b).layer(RateLimitLayer(10, per=1.0)).build(call_api)

    Args:
      n: Starts allowed per window, ``>= 1``.
      per: The window, in seconds, ``> 0``.
    """

    def __init__(self, n: int, *, per: float) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self.n = n
        self.per = seconds("per", per, positive=True)
        self._bucket = _Bucket(n, self.per)

    def layer(self, inner: Service[Any, Any]) -> RateLimit:
        """Return a ``RateLimit`` service around ``inner`` sharing this layer's bucket."""
        return RateLimit(inner, self._bucket)

    def __repr__(self) -> str:
        return f"RateLimitLayer({self.n}, per={self.per:g})"


class RateLimit:
    """The service made by ``RateLimitLayer``: takes a token, then runs ``inner``."""

    __slots__ = ("bucket", "inner")

    def __init__(self, inner: Service[Any, Any], bucket: _Bucket) -> None:
        self.inner = inner
        self.bucket = bucket

    async def __call__(self, task: Task[Any]) -> Any:
        """Wait for a token (first come, first served), then run ``inner``."""
        await self.bucket.take()
        return await self.inner(task)

    def __repr__(self) -> str:
        return f"<RateLimit {self.bucket.n}/{self.bucket.per:g}s -> {self.inner!r}>"
