"""Backoff policies: how long to wait before the next attempt of a failed task."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._durations import seconds
from ._durations import seconds as _seconds

__all__ = ["Backoff", "Exponential", "Fixed", "Linear", "backoff_from"]


@runtime_checkable
class Backoff(Protocol):
    """Gives the delay in seconds before the attempt after ``attempt`` (1-based)."""

    def delay(self, attempt: int) -> float:
        """Return the seconds to wait after failed attempt number ``attempt``."""
        ...


class Exponential:
    """``base * factor ** (attempt - 1)`` seconds, capped, with jitter (the default).

    With ``jitter`` (the default) the delay is drawn uniformly from
    ``[d / 2, d]`` ("equal jitter"), so retries of many tasks that failed
    together spread out instead of stampeding.

    Example::

        Exponential(base=1.0, factor=2.0, max_delay=3600)  # 1s, 2s, 4s... (halved at worst)

    Args:
      base: Delay after the first failure, in seconds.
      factor: Growth per attempt.
      max_delay: Cap, in seconds.
      jitter: Whether to randomise.
      rng: The ``random.Random`` used for jitter (for reproducible tests).
    """

    def __init__(
        self,
        *,
        base: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 3600.0,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        base = seconds("base", base)
        max_delay = seconds("max_delay", max_delay)
        if not (isinstance(factor, int | float) and 1 <= factor < math.inf):
            raise ValueError(f"factor must be a finite number >= 1, got {factor!r}")
        self.base, self.factor, self.max_delay, self.jitter = base, factor, max_delay, jitter
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Return the capped exponential delay, jittered if asked."""
        d = min(self.max_delay, self.base * self.factor ** min(max(attempt - 1, 0), 64))
        if self.jitter:
            d = d / 2 + self.rng.random() * d / 2
        return d

    def __repr__(self) -> str:
        return (
            f"Exponential(base={self.base}, factor={self.factor}, "
            f"max_delay={self.max_delay}, jitter={self.jitter})"
        )


class Fixed:
    """The same delay after every failure.

    Example::

        Fixed(10)  # retry every 10 seconds
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = _seconds("seconds", seconds)

    def delay(self, attempt: int) -> float:
        """Return the fixed delay."""
        return self.seconds

    def __repr__(self) -> str:
        return f"Fixed({self.seconds})"


class Linear:
    """``step * attempt`` seconds, capped.

    Example::

        Linear(5, max_delay=60)  # 5s, 10s, 15s... up to a minute
    """

    def __init__(self, step: float, *, max_delay: float = 3600.0) -> None:
        self.step = seconds("step", step)
        self.max_delay = seconds("max_delay", max_delay)

    def delay(self, attempt: int) -> float:
        """Return the capped linear delay."""
        return min(self.max_delay, self.step * max(attempt, 1))

    def __repr__(self) -> str:
        return f"Linear({self.step}, max_delay={self.max_delay})"


class _FnBackoff:
    def __init__(self, fn: Callable[[int], float]) -> None:
        self.fn = fn

    def delay(self, attempt: int) -> float:
        return float(self.fn(attempt))

    def __repr__(self) -> str:
        return f"backoff_from({getattr(self.fn, '__name__', self.fn)!r})"


def backoff_from(policy: Backoff | Callable[[int], float]) -> Backoff:
    """Return ``policy`` as a ``Backoff``; a plain function of the attempt is wrapped."""
    if isinstance(policy, Backoff):
        return policy
    if callable(policy):
        return _FnBackoff(policy)
    raise TypeError(f"a backoff is a Backoff or a function of the attempt, got {policy!r}")
