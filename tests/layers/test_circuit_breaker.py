"""CircuitBreakerLayer: closed -> open after failures -> half-open trials -> closed or open."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trioqueue import (
    Abort,
    EventKind,
    Fixed,
    MemoryBackend,
    ServiceBuilder,
    Snooze,
    Status,
    Task,
    Worker,
    WorkerBuilder,
    WorkerEvent,
)
from trioqueue.layers import CircuitBreakerLayer, CircuitState, RetryLayer


class Upstream:
    """A handler that fails while ``failing`` and counts its calls."""

    def __init__(self) -> None:
        self.failing = True
        self.calls: list[float] = []
        self.hold: trio.Event | None = None

    async def handler(self, x: int) -> str:
        self.calls.append(trio.current_time())
        if self.hold is not None:
            await self.hold.wait()
        if self.failing:
            raise ConnectionError("upstream down")
        return "ok"


def state(breaker: CircuitBreakerLayer) -> CircuitState:
    return breaker.state


def task() -> Task[int]:
    return Task(0, queue="q", attempts=1)


async def test_transitions(autojump_clock: trio.abc.Clock) -> None:
    up = Upstream()
    breaker = CircuitBreakerLayer(failure_threshold=3, cool_down=10.0)
    svc = ServiceBuilder().layer(breaker).service(up.handler)

    # Two failures, a success, two failures: never three in a row.
    for failing in (True, True, False, True, True):
        up.failing = failing
        try:
            await svc(task())
        except ConnectionError:
            pass
    assert state(breaker) is CircuitState.CLOSED

    # The third failure in a row opens it.
    with pytest.raises(ConnectionError):
        await svc(task())
    assert state(breaker) is CircuitState.OPEN
    calls = len(up.calls)

    # Open: tasks are not run and are sent back for the cool-down left.
    with pytest.raises(Snooze) as info:
        await svc(task())
    assert info.value.seconds == pytest.approx(10.0)
    await trio.sleep(4)
    with pytest.raises(Snooze) as info:
        await svc(task())
    assert info.value.seconds == pytest.approx(6.0)
    assert len(up.calls) == calls
    assert state(breaker) is CircuitState.OPEN

    # After the cool-down one trial runs; a failed trial opens it again.
    await trio.sleep(6)
    with pytest.raises(ConnectionError):
        await svc(task())
    assert len(up.calls) == calls + 1
    assert state(breaker) is CircuitState.OPEN
    with pytest.raises(Snooze) as info:
        await svc(task())
    assert info.value.seconds == pytest.approx(10.0)

    # Half-open: one trial at a time; others go back for a cool-down.
    await trio.sleep(10)
    up.failing = False
    up.hold = trio.Event()
    states: list[CircuitState] = []
    async with trio.open_nursery() as nursery:

        async def trial() -> None:
            states.append(state(breaker))
            assert await svc(task()) == "ok"

        nursery.start_soon(trial)
        await trio.testing.wait_all_tasks_blocked()
        assert state(breaker) is CircuitState.HALF_OPEN
        with pytest.raises(Snooze) as info:
            await svc(task())
        assert info.value.seconds == pytest.approx(10.0)
        up.hold.set()
    assert state(breaker) is CircuitState.CLOSED
    assert states == [CircuitState.OPEN]  # it turns half-open when the trial arrives
    assert len(up.calls) == calls + 2


async def test_abort_does_not_count(autojump_clock: trio.abc.Clock) -> None:
    async def handler(x: int) -> None:
        raise Abort("bad input")

    breaker = CircuitBreakerLayer(failure_threshold=1)
    svc = ServiceBuilder().layer(breaker).service(handler)
    for _ in range(3):
        with pytest.raises(Abort):
            await svc(task())
    assert state(breaker) is CircuitState.CLOSED


async def test_open_breaker_sends_tasks_back_to_storage(autojump_clock: trio.abc.Clock) -> None:
    up = Upstream()
    breaker = CircuitBreakerLayer(failure_threshold=2, cool_down=30.0)
    worker: Worker | None = None

    def on_event(event: WorkerEvent) -> None:
        if event.kind is EventKind.TASK_FAILED and len(up.calls) == 2:
            up.failing = False
        if event.kind is EventKind.TASK_DONE and worker is not None:
            worker.stop()

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1)
        t0 = trio.current_time()
        builder: Any = WorkerBuilder("w").backend(backend).on_event(on_event).concurrency(1)
        worker = builder.layer(RetryLayer(Fixed(1.0))).layer(breaker).build(up.handler)
        await worker.run()
        stored = await backend.get_task(tid)
    # Attempts at t0 and t0+1 fail and open the breaker; at t0+2 the task
    # snoozes for the 29 s left (no attempt spent); attempt 3 (t0+31) is the
    # trial and succeeds.
    assert [round(t - t0, 6) for t in up.calls] == [0.0, 1.0, 31.0]
    assert stored is not None
    assert (stored.status, stored.attempts, stored.result) == (Status.DONE, 3, "ok")
    assert state(breaker) is CircuitState.CLOSED


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        CircuitBreakerLayer(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreakerLayer(half_open_max=0)
    with pytest.raises(ValueError):
        CircuitBreakerLayer(cool_down=-1)
