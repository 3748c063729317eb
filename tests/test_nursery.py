"""Errors leave our internal nurseries as themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from backend_factories import Factory

import trioqueue as tq
from trioqueue._nursery import open_nursery


async def test_an_error_of_the_body_comes_out_as_itself() -> None:
    with pytest.raises(KeyError):
        async with open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise KeyError("body")


async def test_an_error_of_a_child_comes_out_as_itself_with_its_cause() -> None:
    async def child() -> None:
        try:
            raise ValueError("root")
        except ValueError as exc:
            raise RuntimeError("child") from exc

    with pytest.raises(RuntimeError) as info:
        async with open_nursery() as nursery:
            nursery.start_soon(child)
            await trio.sleep_forever()
    assert isinstance(info.value.__cause__, ValueError)


async def test_two_errors_stay_a_group() -> None:
    async def fail(exc: Exception) -> None:
        raise exc

    with pytest.RaisesGroup(KeyError, ValueError):
        async with open_nursery() as nursery:
            nursery.start_soon(fail, KeyError("a"))
            nursery.start_soon(fail, ValueError("b"))


async def test_a_cancellation_still_reaches_its_scope() -> None:
    with trio.move_on_after(0.01) as scope:
        async with open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_open_backend_and_a_worker_raise_errors_unwrapped() -> None:
    async def handler(n: int) -> None:
        pass

    with pytest.raises(KeyError):
        async with tq.open_backend("memory://") as b:
            async with b.open_consumer(concurrency=1):
                raise KeyError("inside")

    with pytest.raises(LookupError):
        async with tq.open_backend("memory://") as b:
            worker = tq.WorkerBuilder("w").backend(b).build(handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(worker.serve)
                raise LookupError("beside a worker")


async def test_the_body_of_every_backend_raises_errors_unwrapped(open_backend: Factory) -> None:
    with pytest.raises(KeyError) as info:
        async with open_backend() as b:
            await b.push(1)
            raise KeyError("inside")
    assert type(info.value) is KeyError


async def test_the_body_of_open_backend_raises_errors_unwrapped(tmp_path: Path) -> None:
    from pg_support import fresh_database

    with fresh_database() as pg_url:
        for url in ("memory://", f"sqlite:///{tmp_path}/q.db", pg_url):
            with pytest.raises(KeyError) as info:
                async with tq.open_backend(url) as b:
                    await b.push(1)
                    raise KeyError(url)
            assert type(info.value) is KeyError, url


async def test_a_monitor_raises_a_worker_error_unwrapped(autojump_clock: trio.abc.Clock) -> None:
    async def handler(n: int) -> None:
        pass

    async with tq.open_backend("memory://") as b:
        worker = tq.WorkerBuilder("w").backend(b).build(handler)
    monitor = tq.Monitor(signals=()).register(worker)
    with pytest.raises(tq.BackendClosed) as info:
        await monitor.run(burst=True)
    assert type(info.value) is tq.BackendClosed
