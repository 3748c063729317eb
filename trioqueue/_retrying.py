"""Retrying storage calls: a transient driver error is retried with backoff.

Each backend declares which of its driver's exceptions are transient (a lost
connection, a locked file: see ``BackendSpec.transient``). Those are retried
with capped exponential backoff; any other exception from a driver is a bug
or bad data, and fails the call at once with a ``BackendError`` that says so.
"""

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
    transient: tuple[type[BaseException], ...],
    attempts: float = math.inf,
    base: float = 0.05,
    cap: float = 5.0,
) -> T:
    """Call ``await fn(*args)``, retrying ``transient`` errors with capped exponential backoff.

    Raises:
      BackendError: once ``attempts`` calls failed, or at once for an error
        that is not transient; the driver's error is the cause.
    """
    n = 0
    while True:
        try:
            return await fn(*args)
        except (trio.Cancelled, KeyboardInterrupt, TrioqueueError):
            raise
        except transient as exc:
            n += 1
            if n >= attempts:
                raise BackendError(f"storage failed to {what}: {exc!r}") from exc
            delay = min(cap, base * 2 ** min(n, 30)) * (0.5 + random.random() / 2)
            log.warning("storage failed to %s (%r); retry %d in %.2fs", what, exc, n, delay)
            await trio.sleep(delay)
        except Exception as exc:
            raise BackendError(
                f"storage failed to {what}: {exc!r} (not a transient error of this backend, "
                f"so not retried)"
            ) from exc
