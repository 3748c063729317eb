"""LogLayer: one start and one end record per attempt, with structured fields."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from trioqueue import (
    Abort,
    Attempt,
    Fixed,
    MemoryBackend,
    RetryAfter,
    ServiceBuilder,
    Task,
    WorkerBuilder,
)
from trioqueue.layers import LogLayer, RetryLayer


def fields(record: logging.LogRecord) -> dict[str, object]:
    keys = ("queue", "task_id", "attempt", "outcome", "duration", "task_args")
    return {k: getattr(record, k) for k in keys if hasattr(record, k)}


async def test_records_per_attempt_through_a_worker(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trioqueue.task")

    async def handler(x: int, attempt: Attempt) -> int:
        await trio.sleep(0.25)
        if attempt == 1:
            raise ValueError("first try")
        return x

    async with MemoryBackend.open(queue="mail") as backend:
        tid = await backend.push(5)
        builder = WorkerBuilder("w").backend(backend).layer(LogLayer())
        builder.layer(RetryLayer(Fixed(2.0)))
        await builder.build(handler).run(burst=True)  # attempt 1 fails; retry in 2 s
        await trio.sleep(2)
        await builder.build(handler).run(burst=True)
    records = [r for r in caplog.records if r.name == "trioqueue.task"]
    assert [fields(r) for r in records] == [
        {"queue": "mail", "task_id": tid, "attempt": 1},
        {"queue": "mail", "task_id": tid, "attempt": 1, "outcome": "retry", "duration": 0.25},
        {"queue": "mail", "task_id": tid, "attempt": 2},
        {"queue": "mail", "task_id": tid, "attempt": 2, "outcome": "done", "duration": 0.25},
    ]
    assert all(r.levelno == logging.INFO for r in records)
    assert records[1].getMessage() == (
        f"task {tid} attempt 1 retry in 0.250s: ValueError: first try"
    )
    assert records[3].getMessage() == f"task {tid} attempt 2 done in 0.250s"


@pytest.mark.parametrize(
    ("exc", "attempts", "outcome"),
    [
        (ValueError("x"), 1, "failed"),
        (ValueError("x"), 3, "killed"),
        (RetryAfter(1), 1, "retry"),
        (RetryAfter(1), 3, "killed"),
        (Abort("no"), 1, "killed"),
    ],
)
async def test_outcome_names(
    caplog: pytest.LogCaptureFixture, exc: Exception, attempts: int, outcome: str
) -> None:
    caplog.set_level(logging.INFO, logger="trioqueue.task")

    async def handler(x: int) -> None:
        raise exc

    svc = ServiceBuilder().layer(LogLayer()).service(handler)
    with pytest.raises(type(exc)):
        await svc(Task(1, queue="q", attempts=attempts, max_attempts=3))
    assert caplog.records[-1].outcome == outcome  # type: ignore[attr-defined]


async def test_cancelled_attempt_is_released(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trioqueue.task")

    async def handler(x: int) -> None:
        await trio.sleep_forever()

    svc = ServiceBuilder().layer(LogLayer()).service(handler)
    # cancelled as a shutdown cancels: no deadline has passed
    async with trio.open_nursery() as nursery:
        nursery.start_soon(svc, Task(1, queue="q", attempts=1))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert caplog.records[-1].outcome == "released"  # type: ignore[attr-defined]


async def test_args_custom_logger_and_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="app.jobs")

    async def handler(x: dict[str, int]) -> None:
        return None

    layer = LogLayer("app.jobs", level=logging.DEBUG, include_args=True)
    await ServiceBuilder().layer(layer).service(handler)(Task({"n": 1}, queue="q", attempts=1))
    assert [(r.name, r.levelno, r.task_args) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("app.jobs", logging.DEBUG, {"n": 1}),
        ("app.jobs", logging.DEBUG, {"n": 1}),
    ]


async def test_nothing_when_the_level_is_filtered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trioqueue.task")

    async def handler(x: int) -> int:
        return x

    assert await ServiceBuilder().layer(LogLayer()).service(handler)(Task(3, attempts=1)) == 3
    assert not [r for r in caplog.records if r.name == "trioqueue.task"]
