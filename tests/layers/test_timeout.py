"""TimeoutLayer: a per-attempt deadline; a timed-out attempt fails and is retried."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trioqueue import (
    Attempt,
    EventKind,
    Fixed,
    MemoryBackend,
    ServiceBuilder,
    Status,
    Task,
    TaskTimeout,
    Worker,
    WorkerBuilder,
    WorkerEvent,
)
from trioqueue.layers import RetryLayer, TimeoutLayer


def build(backend: MemoryBackend, handler: Any, *layers: Any) -> tuple[Worker, list[WorkerEvent]]:
    """A worker that stops by itself once a task is done or killed, and its events."""
    events: list[WorkerEvent] = []
    worker: Worker | None = None

    def on_event(event: WorkerEvent) -> None:
        events.append(event)
        if event.kind in (EventKind.TASK_DONE, EventKind.TASK_KILLED) and worker is not None:
            worker.stop()

    builder = WorkerBuilder("w").backend(backend).on_event(on_event)
    for layer in layers:
        builder.layer(layer)
    worker = builder.build(handler)
    return worker, events


async def test_deadline_fires_then_the_retry_succeeds(autojump_clock: trio.abc.Clock) -> None:
    starts: list[float] = []
    cancelled_at: list[float] = []

    async def handler(x: int, attempt: Attempt) -> str:
        starts.append(trio.current_time())
        if attempt == 1:
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                cancelled_at.append(trio.current_time())
                raise
        return "ok"

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1)
        worker, events = build(backend, handler, RetryLayer(Fixed(3.0)), TimeoutLayer(5))
        await worker.run()
        task = await backend.get_task(tid)
    assert round(cancelled_at[0] - starts[0], 6) == 5.0
    assert round(starts[1] - cancelled_at[0], 6) == 3.0
    assert task is not None
    assert (task.status, task.attempts, task.result) == (Status.DONE, 2, "ok")
    failed = [e for e in events if e.kind is EventKind.TASK_FAILED]
    assert len(failed) == 1
    assert isinstance(failed[0].error, Exception)
    assert isinstance(failed[0].error.__cause__, TaskTimeout)


async def test_timeout_without_retry_layer_uses_worker_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(x: int) -> None:
        await trio.sleep(10)

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1, max_attempts=2)
        worker, _ = build(backend, handler, TimeoutLayer(0.5))
        await worker.run()
        task = await backend.get_task(tid)
    assert task is not None
    assert task.status is Status.KILLED
    assert task.attempts == 2
    assert task.last_error == "TaskTimeout: attempt ran past its 0.5s deadline"


async def test_fast_attempt_is_untouched(autojump_clock: trio.abc.Clock) -> None:
    async def handler(x: int) -> int:
        await trio.sleep(0.99)
        return x + 1

    svc = ServiceBuilder().layer(TimeoutLayer(1)).service(handler)
    assert await svc(Task(1, queue="q", attempts=1)) == 2


async def test_deadline_is_per_attempt_not_per_stack(autojump_clock: trio.abc.Clock) -> None:
    async def handler(x: int) -> None:
        await trio.sleep(2)

    svc = ServiceBuilder().layer(TimeoutLayer(1.5)).service(handler)
    start = trio.current_time()
    with pytest.raises(TaskTimeout):
        await svc(Task(1, queue="q", attempts=1))
    assert trio.current_time() - start == pytest.approx(1.5)


def test_rejects_a_non_positive_deadline() -> None:
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            TimeoutLayer(bad)
