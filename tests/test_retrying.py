"""Storage calls: transient driver errors are retried, any other error fails at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

import trioqueue as tq
from trioqueue.backends.memory import MemoryDriver
from trioqueue.drivers import StoredTask


class Flaky(Exception):
    """The error a flaky store raises; transient only where a backend says so."""


class FlakyClaimDriver(MemoryDriver):
    """Claims fail ``failures`` times, then work."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.claims = 0

    async def claim(
        self, queue: str, limit: int, token: str, lease_seconds: float, worker: str = ""
    ) -> list[StoredTask]:
        self.claims += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        return await super().claim(queue, limit, token, lease_seconds, worker)


@asynccontextmanager
async def backend_on(
    driver: MemoryDriver, transient: Sequence[type[BaseException]]
) -> AsyncIterator[tq.Backend]:
    backend = tq.Backend(driver, transient=tuple(transient))
    async with backend.running():
        yield backend


async def double(n: int) -> int:
    return 2 * n


async def test_a_transient_error_is_retried_until_the_call_succeeds(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = FlakyClaimDriver(3, Flaky("connection reset"))
    async with backend_on(driver, [Flaky]) as b:
        id = await b.push(21)
        worker = tq.WorkerBuilder("w").backend(b).build(double)
        with trio.fail_after(60):
            await worker.run(burst=True)
        task = await b.get_task(id)
    assert task is not None and task.status is tq.Status.DONE and task.result == 42
    assert driver.claims >= 4  # three failures, then the claim that worked


async def test_an_undeclared_error_stops_the_worker_with_a_clear_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = FlakyClaimDriver(1, ValueError("a bug in the driver"))
    async with backend_on(driver, [Flaky]) as b:
        id = await b.push(21)
        worker = tq.WorkerBuilder("w").backend(b).build(double)
        with trio.fail_after(60), pytest.raises(tq.BackendError) as info:
            await worker.run()
        task = await b.get_task(id)
    assert "not a transient error" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)
    assert driver.claims == 1  # not retried
    assert task is not None and task.status is tq.Status.PENDING  # nothing lost


async def test_an_undeclared_error_fails_a_push_with_the_driver_error_as_cause() -> None:
    class BrokenInsert(MemoryDriver):
        async def insert(self, tasks: Sequence[StoredTask]) -> int:
            self.inserts = getattr(self, "inserts", 0) + 1
            raise ValueError("cannot store")

    driver = BrokenInsert()
    async with backend_on(driver, [Flaky]) as b:
        with pytest.raises(tq.PushError) as info:
            await b.push(1)
    assert isinstance(info.value.__cause__, ValueError)
    assert driver.inserts == 1


async def test_admin_calls_retry_transient_errors_a_bounded_number_of_times(
    autojump_clock: trio.abc.Clock,
) -> None:
    class DownCounts(MemoryDriver):
        calls = 0

        async def counts(self, queue: str | None) -> dict[str, dict[tq.Status, int]]:
            self.calls += 1
            raise Flaky("down")

    driver = DownCounts()
    async with backend_on(driver, [Flaky]) as b:
        with pytest.raises(tq.BackendError) as info:
            await b.counts()
    assert driver.calls == 3
    assert isinstance(info.value.__cause__, Flaky)


async def test_storage_patience_stops_a_worker_facing_storage_that_keeps_failing(
    autojump_clock: trio.abc.Clock,
) -> None:
    driver = FlakyClaimDriver(10**9, Flaky("disk full"))
    async with backend_on(driver, [Flaky]) as b:
        id = await b.push(21)
        worker = tq.WorkerBuilder("w").backend(b).storage_patience(20).build(double)
        began = trio.current_time()
        with trio.fail_after(600), pytest.raises(tq.BackendError) as info:
            await worker.run(burst=True)
        took = trio.current_time() - began
        task = await b.get_task(id)
    assert "storage failed to claim tasks for 20s" in str(info.value)
    assert "giving up" in str(info.value)
    assert isinstance(info.value.__cause__, Flaky)
    assert 20 <= took < 21  # the last pause is cut to the bound
    assert driver.claims > 3
    assert task is not None and task.status is tq.Status.PENDING  # nothing lost


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_storage_patience_refuses_a_bad_duration(bad: float) -> None:
    with pytest.raises(ValueError, match="storage_patience"):
        tq.WorkerBuilder("w").storage_patience(bad)
