"""Retrying storage calls: a driver error is retried with backoff, never fatal at once."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ._errors import BackendError, TrioqueueError

__all__ = ["CLEANUP_TIMEOUT", "retrying"]

log = logging.getLogger("trioqueue.backend")

T = TypeVar("T")

#: Seconds of the shielded clean-up (final settle, release) at shutdown.
CLEANUP_TIMEOUT = 10.0


async def retrying(
    what: str,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    attempts: float = math.inf,
    base: float = 0.05,
    cap: float = 5.0,
) -> T:
    """Call ``await fn(*args)``, retrying driver errors with capped exponential backoff.

    Raises:
      BackendError: once ``attempts`` calls failed; the last error is the cause.
    """
    n = 0
    while True:
        try:
            return await fn(*args)
        except (trio.Cancelled, KeyboardInterrupt, TrioqueueError):
            raise
        except Exception as exc:
            n += 1
            if n >= attempts:
                raise BackendError(f"storage failed to {what}: {exc!r}") from exc
            delay = min(cap, base * 2 ** min(n, 30)) * (0.5 + random.random() / 2)
            log.warning("storage failed to %s (%r); retry %d in %.2fs", what, exc, n, delay)
            await trio.sleep(delay)
