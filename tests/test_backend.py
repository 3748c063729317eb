"""Producers feel backpressure; memory stays bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing

import trioqueue as tq
from trioqueue import Status
from trioqueue.backends.memory import MemoryDriver


class GatedDriver(MemoryDriver):
    """A memory driver whose inserts wait for a gate: storage slower than producers."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self._calls = 0  # inserts run in the order they were called, once the gate opens
        self._turn = 0
        self._next = trio.Event()

    async def insert(self, tasks: Sequence[tq.StoredTask]) -> int:
        ticket, self._calls = self._calls, self._calls + 1
        await self.gate.wait()
        while self._turn != ticket:
            await self._next.wait()
        try:
            return await super().insert(tasks)
        finally:
            self._turn += 1
            self._next.set()
            self._next = trio.Event()


class CountingDriver(MemoryDriver):
    """Counts inserted tasks and keeps none of them (a sink for a million tasks)."""

    def __init__(self) -> None:
        super().__init__()
        self.inserted = 0

    async def insert(self, tasks: Sequence[tq.StoredTask]) -> int:
        self.inserted += len(tasks)
        await trio.lowlevel.checkpoint()
        return len(tasks)


async def test_a_producer_waits_on_a_full_channel() -> None:
    driver = GatedDriver()
    backend = tq.Backend(driver, push_buffer=2)
    returned: list[int] = []

    async def producer(i: int) -> None:
        await backend.push(i)
        returned.append(i)

    async with backend.running(), trio.open_nursery() as n:
        n.start_soon(producer, 0)
        await trio.testing.wait_all_tasks_blocked()  # a lone push: it waits on storage itself
        n.start_soon(producer, 1)
        await trio.testing.wait_all_tasks_blocked()  # the inserter now waits on storage
        for i in range(2, 7):
            n.start_soon(producer, i)
        await trio.testing.wait_all_tasks_blocked()
        stats = backend.statistics()
        # two batches buffered, the other producers blocked
        assert stats.push_buffer_used == 2
        assert stats.push_waiting == 3
        assert returned == []  # nothing acknowledged before storage has it
        driver.gate.set()
    assert sorted(returned) == list(range(7))
    assert await backend.counts() == {"default": {Status.PENDING: 7}}


@pytest.mark.seconds
async def test_push_stream_of_a_million_holds_a_bounded_number() -> None:
    driver = CountingDriver()
    backend = tq.Backend(driver, push_buffer=8)
    produced = 0
    peak_gap = 0

    async def items() -> AsyncIterator[int]:
        nonlocal produced, peak_gap
        for i in range(1_000_000):
            produced += 1
            peak_gap = max(peak_gap, produced - driver.inserted)
            yield i

    async with backend.running():
        assert await backend.push_stream(items()) == 1_000_000
    assert driver.inserted == 1_000_000
    # in flight at most: the push channel's batches, one being built, one inserting
    chunk = 256
    assert peak_gap <= (8 + 2) * chunk


class PoisonDriver(GatedDriver):
    """Refuses any batch holding the task id ``poison`` (after the gate opens)."""

    async def insert(self, tasks: Sequence[tq.StoredTask]) -> int:
        await self.gate.wait()
        if any(t.id == "poison" for t in tasks):
            raise OSError("storage refused the poison task")
        return await MemoryDriver.insert(self, tasks)


async def test_a_refused_batch_does_not_fail_the_batches_merged_with_it() -> None:
    driver = PoisonDriver()
    backend = tq.Backend(driver, insert_attempts=1)
    results: dict[str, str] = {}

    async def producer(id: str) -> None:
        try:
            await backend.push(id, id=id)
            results[id] = "stored"
        except tq.PushError as exc:
            results[id] = f"refused: {exc.__cause__}"

    async with backend.running(), trio.open_nursery() as n:
        n.start_soon(producer, "first")
        await trio.testing.wait_all_tasks_blocked()  # the inserter waits on storage
        for id in ("a", "poison", "b"):
            n.start_soon(producer, id)
        await trio.testing.wait_all_tasks_blocked()  # those three wait in one channel
        driver.gate.set()
    assert results == {
        "first": "stored",
        "a": "stored",
        "b": "stored",
        "poison": "refused: storage refused the poison task",
    }
    assert await backend.counts() == {"default": {Status.PENDING: 3}}


async def test_an_id_of_another_queue_fails_only_the_producer_that_pushed_it() -> None:
    driver = GatedDriver()
    backend = tq.Backend(driver, push_buffer=8)
    outcomes: dict[str, object] = {}

    async def producer(name: str, task: tq.Task[int]) -> None:
        try:
            outcomes[name] = await backend.push_task(task)
        except tq.DuplicateTask as exc:
            outcomes[name] = exc

    async with backend.running(), trio.open_nursery() as n:
        n.start_soon(producer, "first", tq.Task(0, id=tq.TaskId("taken"), queue="a"))
        await trio.testing.wait_all_tasks_blocked()  # a lone push, waiting on storage
        # These three are merged into one insert by the inserter.
        n.start_soon(producer, "clash", tq.Task(1, id=tq.TaskId("taken"), queue="b"))
        n.start_soon(producer, "same", tq.Task(2, id=tq.TaskId("taken"), queue="a"))
        n.start_soon(producer, "other", tq.Task(3, id=tq.TaskId("free"), queue="b"))
        await trio.testing.wait_all_tasks_blocked()
        driver.gate.set()
    clash = outcomes.pop("clash")
    assert isinstance(clash, tq.DuplicateTask) and isinstance(clash, tq.PushError)
    assert (clash.id, clash.queue, clash.status) == ("taken", "a", Status.PENDING)
    assert "queue 'a'" in str(clash)
    assert outcomes == {"first": "taken", "same": "taken", "other": "free"}
    assert await backend.counts() == {"a": {Status.PENDING: 1}, "b": {Status.PENDING: 1}}
