"""Stop running tasks while the inner service keeps failing; send them back to storage."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

import trio

from .._durations import seconds
from .._errors import Abort, Snooze
from .._service import Service
from .._task import Task

__all__ = ["CircuitBreaker", "CircuitBreakerLayer", "CircuitState"]

log = logging.getLogger("trioqueue.layers.circuit_breaker")


class CircuitState(enum.StrEnum):
    """Where a circuit breaker is: ``CLOSED`` runs tasks, ``OPEN`` returns them to storage."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _counts(exc: Exception) -> bool:
    return not isinstance(exc, Abort)


class _Circuit:
    __slots__ = ("failures", "opened_at", "state", "trials")

    def __init__(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0  # consecutive failures while closed
        self.opened_at = 0.0
        self.trials = 0  # trial tasks running while half-open


class CircuitBreakerLayer:
    """Opens after ``failure_threshold`` failures in a row and keeps tasks out for ``cool_down``.

    While ``OPEN`` a task is not run: it snoozes (``Snooze``, the cool-down
    left), so it goes back to storage and comes back when the breaker may let
    it through, without spending an attempt: a long outage does not kill
    tasks whose handler never ran.
    After the cool-down the breaker is ``HALF_OPEN``: ``half_open_max`` trial
    tasks run; other tasks are sent back for another ``cool_down``. A trial
    that succeeds closes the breaker; one that fails opens it again. The
    state belongs to the layer object, shared by every worker built with it.
    ``Abort`` is a verdict on the task, not on the service, and does not count.

    Example::

        breaker = CircuitBreakerLayer(failure_threshold=5, cool_down=30.0)
        worker = WorkerBuilder("sms").backend(b).layer(breaker).build(send_sms)
        ...
        breaker.state  # CircuitState.CLOSED

    Args:
      failure_threshold: Failures in a row that open the breaker, ``>= 1``.
      cool_down: Seconds it stays open before trials, ``>= 0``.
      half_open_max: Trial tasks allowed at once while half-open, ``>= 1``.
      failure_if: Which exceptions count as failures (default: all but ``Abort``).
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cool_down: float = 30.0,
        half_open_max: int = 1,
        *,
        failure_if: Callable[[Exception], bool] = _counts,
    ) -> None:
        if failure_threshold < 1 or half_open_max < 1:
            raise ValueError("need failure_threshold >= 1 and half_open_max >= 1")
        self.failure_threshold = failure_threshold
        self.cool_down = seconds("cool_down", cool_down)
        self.half_open_max = half_open_max
        self.failure_if = failure_if
        self._circuit = _Circuit()

    @property
    def state(self) -> CircuitState:
        """The state (``OPEN`` turns ``HALF_OPEN`` when a task comes after the cool-down)."""
        return self._circuit.state

    def layer(self, inner: Service[Any, Any]) -> CircuitBreaker:
        """Return a ``CircuitBreaker`` service around ``inner`` sharing this layer's state."""
        return CircuitBreaker(inner, self)

    def __repr__(self) -> str:
        return (
            f"CircuitBreakerLayer({self.failure_threshold}, {self.cool_down:g}, "
            f"{self.half_open_max}) {self.state.value}"
        )


class CircuitBreaker:
    """The service made by ``CircuitBreakerLayer``: gates ``inner`` and records its outcomes."""

    __slots__ = ("circuit", "config", "inner")

    def __init__(self, inner: Service[Any, Any], config: CircuitBreakerLayer) -> None:
        self.inner = inner
        self.config = config
        self.circuit = config._circuit

    def _open(self, now: float) -> None:
        c = self.circuit
        c.state, c.opened_at, c.failures = CircuitState.OPEN, now, 0
        log.warning("circuit opened for %gs", self.config.cool_down)

    async def __call__(self, task: Task[Any]) -> Any:
        """Run ``inner`` if the breaker lets the task through.

        Raises:
          Snooze: while open (the cool-down left) or half-open with every
            trial slot taken (the cool-down).
        """
        c, cfg = self.circuit, self.config
        trial = False
        if c.state is not CircuitState.CLOSED:
            now = trio.current_time()
            if c.state is CircuitState.OPEN:
                left = c.opened_at + cfg.cool_down - now
                if left > 0:
                    raise Snooze(left, "circuit open")
                c.state, c.trials = CircuitState.HALF_OPEN, 0
                log.info("circuit half-open")
            if c.trials >= cfg.half_open_max:
                raise Snooze(cfg.cool_down, "circuit half-open, trials running")
            c.trials += 1
            trial = True
        try:
            result = await self.inner(task)
        except Exception as exc:
            if cfg.failure_if(exc):
                if trial:
                    self._open(trio.current_time())
                elif c.state is CircuitState.CLOSED:
                    c.failures += 1
                    if c.failures >= cfg.failure_threshold:
                        self._open(trio.current_time())
            raise
        finally:
            if trial:
                c.trials -= 1
        if trial and c.state is CircuitState.HALF_OPEN:
            c.state, c.failures = CircuitState.CLOSED, 0
            log.info("circuit closed")
        elif c.state is CircuitState.CLOSED:
            c.failures = 0
        return result

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.circuit.state.value} -> {self.inner!r}>"
