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
    give_up_after: float = math.inf,
    base: float = 0.05,
    cap: float = 5.0,
) -> T:
    """Call ``await fn(*args)``, retrying ``transient`` errors with capped exponential backoff.

    Args:
      attempts: Calls allowed in all.
      give_up_after: Seconds, from the first call, after which a transient
        error is no longer retried (storage that keeps failing: a file
        locked by a frozen process, a full disk, a server that stays down).

    Raises:
      BackendError: once ``attempts`` calls failed or ``give_up_after``
        seconds went by, or at once for an error that is not transient; the
        driver's error is the cause.
    """
    n = 0
    began = trio.current_time() if give_up_after != math.inf else 0.0
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
            if give_up_after != math.inf:
                left = began + give_up_after - trio.current_time()
                if left <= 0:
                    raise BackendError(
                        f"storage failed to {what} for {give_up_after:g}s "
                        f"({n} tries), giving up: {exc!r}"
                    ) from exc
                delay = min(delay, left)
            log.warning("storage failed to %s (%r); retry %d in %.2fs", what, exc, n, delay)
            await trio.sleep(delay)
        except Exception as exc:
            raise BackendError(
                f"storage failed to {what}: {exc!r} (not a transient error of this backend, "
                f"so not retried)"
            ) from exc
