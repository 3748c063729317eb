"""asyncio code inside Trio handlers: ``run_asyncio`` and ``asyncio_handler`` (on trio-asyncio)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import trio
import trio_asyncio

from trioqueue import Data, MemoryBackend, Status, TaskCancelled, TaskId, WorkerBuilder
from trioqueue.asyncio import asyncio_handler, run_asyncio


@dataclass
class Seen:
    loops: list[int]


@asyncio_handler
async def aio_double(n: int, seen: Data[Seen], task_id: TaskId) -> dict[str, object]:
    loop = asyncio.get_running_loop()  # raises outside asyncio
    seen.loops.append(id(loop))
    queue: asyncio.Queue[int] = asyncio.Queue()
    loop.call_soon(queue.put_nowait, n * 2)
    return {"value": await queue.get(), "id": task_id}


async def test_an_asyncio_handler_gets_its_parameters_injected() -> None:
    seen = Seen([])
    async with MemoryBackend.open() as backend:
        ids = [await backend.push(n) for n in range(3)]
        worker = WorkerBuilder("aio").backend(backend).data(seen).build(aio_double)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            results = [await backend.wait_result(i) for i in ids]
            worker.stop()
    assert results == [{"value": 2 * n, "id": i} for n, i in zip(range(3), ids, strict=True)]
    assert len(seen.loops) == 3  # a loop per call: none was open around the worker


async def test_one_loop_open_around_the_worker_is_shared_by_its_tasks() -> None:
    seen = Seen([])
    async with trio_asyncio.open_loop(), MemoryBackend.open() as backend:
        ids = [await backend.push(n) for n in range(4)]
        worker = WorkerBuilder("aio").backend(backend).data(seen).concurrency(2).build(aio_double)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            for i in ids:
                await backend.wait_result(i)
            worker.stop()
    assert len(seen.loops) == 4 and len(set(seen.loops)) == 1


async def test_cancelling_the_task_cancels_the_asyncio_code() -> None:
    started, cancelled = trio.Event(), []

    async def wait_forever() -> None:
        try:
            started.set()  # a plain flag: trio's Event.set is safe from the loop's thread
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def handler(n: int) -> None:
        await run_asyncio(wait_forever)

    async with MemoryBackend.open() as backend:
        tid = await backend.push(1)
        worker = WorkerBuilder("aio").backend(backend).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            await started.wait()
            assert await backend.cancel_task(tid)
            with pytest.raises(TaskCancelled):
                await backend.wait_result(tid)
            worker.stop()
        task = await backend.get_task(tid)
    assert task is not None and task.status is Status.CANCELLED
    assert cancelled == [True]


async def test_run_asyncio_passes_values_and_errors_through() -> None:
    async def divide(a: int, *, b: int) -> float:
        await asyncio.sleep(0)
        return a / b

    assert await run_asyncio(divide, 6, b=3) == 2
    with pytest.raises(ZeroDivisionError):
        await run_asyncio(divide, 1, b=0)
