"""The examples of the "Pushing Tasks" manual page, in trioqueue's Python form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

import trioqueue as tq
from trioqueue import Status, Task, TaskSink, TaskSinkError


async def payloads(backend: tq.Backend) -> list[Any]:
    tasks = await backend.list_tasks(limit=1000)
    return sorted(t.args for t in tasks)


async def test_push_a_single_task(memory_backend: tq.MemoryBackend) -> None:
    async def enqueue_task(backend: TaskSink[str]) -> tq.TaskId:
        return await backend.push("send_email:user@example.com")

    task_id = await enqueue_task(memory_backend)
    task = await memory_backend.get_task(task_id)
    assert task is not None
    assert task.args == "send_email:user@example.com"
    assert task.status is Status.PENDING
    assert task.queue == "default"


async def test_push_bulk(memory_backend: tq.MemoryBackend) -> None:
    jobs = ["job1", "job2", "job3"]
    ids = await memory_backend.push_bulk(jobs)
    assert len(ids) == 3 and len(set(ids)) == 3
    assert ids == sorted(ids)  # generated ids are time-sortable
    assert await payloads(memory_backend) == jobs
    assert memory_backend.statistics().tasks_pushed == 3


async def test_push_stream(memory_backend: tq.MemoryBackend) -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(10_000):
            yield i

    assert await memory_backend.push_stream(numbers()) == 10_000
    counts = await memory_backend.counts()
    assert counts == {"default": {Status.PENDING: 10_000}}


async def test_push_a_prebuilt_task(memory_backend: tq.MemoryBackend) -> None:
    task = Task("important_job", id=tq.TaskId("custom-id-1"), priority=5, meta={"k": "v"})
    assert await memory_backend.push_task(task) == "custom-id-1"
    stored = await memory_backend.get_task("custom-id-1")
    assert stored is not None
    assert (stored.args, stored.priority, stored.meta) == ("important_job", 5, {"k": "v"})


async def test_push_all_prebuilt_tasks(memory_backend: tq.MemoryBackend) -> None:
    async def tasks() -> AsyncIterator[Task[str]]:
        for name in ["task_a", "task_b"]:
            yield Task(name)

    assert await memory_backend.push_all(tasks()) == 2
    assert await payloads(memory_backend) == ["task_a", "task_b"]


async def test_errors_codec_error_and_push_error() -> None:
    class Unencodable:
        pass

    async with tq.MemoryBackend.open() as backend:
        with pytest.raises(tq.CodecError) as ce:
            await backend.push(Unencodable())  # type: ignore[arg-type]
        assert isinstance(ce.value, TaskSinkError)
        assert await backend.counts() == {}

    class FailingDriver(tq.backends.memory.MemoryDriver):
        async def insert(self, tasks: Any) -> int:
            raise OSError("disk on fire")

    backend = tq.Backend(FailingDriver(), insert_attempts=2)
    async with backend.running():
        with pytest.raises(tq.PushError) as pe:
            await backend.push("job")
    assert isinstance(pe.value, TaskSinkError)
    assert isinstance(pe.value.__cause__, OSError)


async def test_push_outside_the_open_block_is_a_clear_error() -> None:
    async with tq.MemoryBackend.open() as backend:
        pass
    with pytest.raises(tq.BackendClosed, match="not open"):
        await backend.push("late")


async def test_pushing_an_existing_id_is_idempotent(memory_backend: tq.MemoryBackend) -> None:
    a = await memory_backend.push("first", id="same")
    b = await memory_backend.push("second", id="same")
    assert a == b == "same"
    stored = await memory_backend.get_task("same")
    assert stored is not None and stored.args == "first"
    assert await memory_backend.counts() == {"default": {Status.PENDING: 1}}


async def test_push_arguments_are_checked(memory_backend: tq.MemoryBackend) -> None:
    with pytest.raises(TypeError, match="priority must be an int"):
        await memory_backend.push("x", priority="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_attempts must be between 1 and"):
        await memory_backend.push("x", max_attempts=0)
    with pytest.raises(ValueError, match="delay must be a number of seconds >= 0"):
        await memory_backend.push("x", delay=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        from datetime import datetime

        await memory_backend.push("x", run_at=datetime(2030, 1, 1))
    with pytest.raises(TypeError, match="push_bulk takes an iterable"):
        await memory_backend.push_bulk("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async iterable"):
        await memory_backend.push_stream([1, 2])  # type: ignore[arg-type]
    assert await memory_backend.counts() == {}
    await trio.lowlevel.checkpoint()
