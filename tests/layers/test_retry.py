"""RetryLayer: retries go through storage, after the backoff; retry_if decides."""

from __future__ import annotations

import itertools
from typing import Any

import trio

from trioqueue import (
    Abort,
    Attempt,
    EventKind,
    Exponential,
    MemoryBackend,
    RetryAfter,
    Snooze,
    Status,
    Worker,
    WorkerBuilder,
    WorkerEvent,
)
from trioqueue.layers import RetryLayer


def build(backend: MemoryBackend, handler: Any, *layers: Any, finals: int = 1) -> Worker:
    """A worker that stops by itself after ``finals`` tasks were done or killed."""
    seen = 0
    worker: Worker | None = None

    def on_event(event: WorkerEvent) -> None:
        nonlocal seen
        if event.kind in (EventKind.TASK_DONE, EventKind.TASK_KILLED):
            seen += 1
            if seen == finals and worker is not None:
                worker.stop()

    builder = WorkerBuilder("w").backend(backend).on_event(on_event)
    for layer in layers:
        builder.layer(layer)
    worker = builder.build(handler)
    return worker


async def test_exponential_backoff_spaces_the_attempts_through_storage(
    autojump_clock: trio.abc.Clock,
) -> None:
    times: list[float] = []

    async def handler(x: int) -> None:
        times.append(trio.current_time())
        raise ValueError("boom")

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1, max_attempts=5)
        layer = RetryLayer(Exponential(base=2.0, factor=3.0, jitter=False))
        await build(backend, handler, layer).run()
        task = await backend.get_task(tid)
    assert task is not None
    assert task.status is Status.KILLED
    assert task.attempts == 5
    assert task.last_error == "ValueError: boom"
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [2.0, 6.0, 18.0, 54.0]


async def test_failed_attempt_is_stored_with_run_at_after_the_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(x: int) -> None:
        raise OSError("down")

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1)
        before = await backend.get_task(tid)
        assert before is not None and before.run_at is not None
        await (
            WorkerBuilder("w")
            .backend(backend)
            .layer(RetryLayer(lambda a: 100.0 * a))
            .build(handler)
            .run(burst=True)
        )
        task = await backend.get_task(tid)
    assert task is not None
    assert task.status is Status.FAILED
    assert task.attempts == 1
    assert task.last_error == "OSError: down"
    assert task.run_at is not None
    assert round((task.run_at - before.run_at).total_seconds(), 3) == 100.0


async def test_retry_if_false_kills_at_once(autojump_clock: trio.abc.Clock) -> None:
    calls = 0

    async def handler(x: int) -> None:
        nonlocal calls
        calls += 1
        raise KeyError("missing")

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1)
        layer = RetryLayer(retry_if=lambda exc: not isinstance(exc, KeyError))
        await build(backend, handler, layer).run()
        task = await backend.get_task(tid)
    assert calls == 1
    assert task is not None
    assert task.status is Status.KILLED
    assert task.attempts == 1
    assert task.last_error == "aborted: KeyError: 'missing'"


async def test_abort_and_retry_after_from_inside_pass_through(
    autojump_clock: trio.abc.Clock,
) -> None:
    times: list[float] = []

    async def handler(x: int) -> None:
        times.append(trio.current_time())
        if len(times) == 1:
            raise RetryAfter(7.0, "later please")
        raise Abort("give up")

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1)
        # A backoff that would show if the layer wrapped these two.
        await build(backend, handler, RetryLayer(lambda a: 1000.0)).run()
        task = await backend.get_task(tid)
    assert round(times[1] - times[0], 6) == 7.0
    assert task is not None
    assert task.status is Status.KILLED
    assert task.attempts == 2
    assert task.last_error == "aborted: give up"


async def test_a_snooze_from_inside_passes_through_and_spends_no_attempt(
    autojump_clock: trio.abc.Clock,
) -> None:
    times: list[float] = []

    async def handler(x: int) -> None:
        times.append(trio.current_time())
        if len(times) < 3:
            raise Snooze(5.0, "not yet")

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1, max_attempts=1)
        await build(backend, handler, RetryLayer(lambda a: 1000.0)).run()
        task = await backend.get_task(tid)
    assert [round(t - times[0], 6) for t in times] == [0.0, 5.0, 10.0]
    assert task is not None and task.status is Status.DONE and task.attempts == 1


async def test_success_after_retries_is_done(autojump_clock: trio.abc.Clock) -> None:
    async def handler(x: int, attempt: Attempt) -> int:
        if attempt < 3:
            raise RuntimeError("flaky")
        return x * 2

    async with MemoryBackend.open() as backend:
        tid = await backend.push(21)
        await build(backend, handler, RetryLayer(Exponential(jitter=False))).run()
        task = await backend.get_task(tid)
    assert task is not None
    assert (task.status, task.attempts, task.result) == (Status.DONE, 3, 42)
