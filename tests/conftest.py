from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
import trio.testing
from backend_factories import BACKEND_NAMES, BACKENDS, Factory

import trioqueue as tq


def trio_clock() -> Callable[[], float]:
    """POSIX seconds that follow the Trio clock (so autojump moves durable backends too)."""
    epoch = time.time() - trio.current_time()
    return lambda: epoch + trio.current_time()


@pytest.fixture
def autojump_clock(request: pytest.FixtureRequest) -> trio.testing.MockClock:
    """Trio's autojump clock; for durable backends it waits for 20 ms of real quiet first.

    A durable driver works in threads (or an asyncio loop) that Trio cannot see:
    a clock that jumped the moment every Trio task was blocked would jump
    while a query is still running, and expire leases under its feet.
    """
    callspec = getattr(request.node, "callspec", None)
    backend = callspec.params.get("open_backend") if callspec is not None else None
    return trio.testing.MockClock(autojump_threshold=0 if backend in (None, "memory") else 0.02)


@pytest.fixture(params=BACKEND_NAMES)
def open_backend(request: pytest.FixtureRequest) -> Factory:
    """A factory of fresh backends, once per backend in ``tests/backend_factories.py``.

    Durable backends get a clock that follows Trio's, so tests on
    ``autojump_clock`` see scheduled times and leases move on every backend alike.
    """
    name = request.param
    factory = BACKENDS[name]
    if name == "memory":
        return factory

    jumping = "autojump_clock" in request.fixturenames

    def with_trio_clock(**options: Any) -> AbstractAsyncContextManager[tq.Backend]:
        options.setdefault("clock", trio_clock())
        if jumping and name == "postgres":
            # The driver bounds a statement in Trio time: once a statement has
            # waited 20 ms on a loaded server, the autojump clock would leap
            # past that bound and fail a statement that is merely slow.
            options.setdefault("statement_timeout", 3600.0)
            options.setdefault("connect_timeout", 3600.0)
        return factory(**options)

    return with_trio_clock


@pytest.fixture
async def memory_backend() -> AsyncIterator[tq.MemoryBackend]:
    async with tq.MemoryBackend.open() as backend:
        yield backend


class Tally:
    """Counts worker events by kind; ``wait(kind, n)`` waits on an event, not a sleep.

    Pass it to ``WorkerBuilder.on_event``.
    """

    def __init__(self) -> None:
        self.counts: dict[tq.EventKind, int] = {}
        self.events: list[tq.WorkerEvent] = []
        self._waiters: list[tuple[tq.EventKind, int, trio.Event]] = []

    def __call__(self, event: tq.WorkerEvent) -> None:
        self.events.append(event)
        self.counts[event.kind] = self.counts.get(event.kind, 0) + 1
        for kind, n, ev in self._waiters:
            if self.counts.get(kind, 0) >= n:
                ev.set()

    async def wait(self, kind: tq.EventKind, n: int = 1) -> None:
        if self.counts.get(kind, 0) >= n:
            return
        ev = trio.Event()
        self._waiters.append((kind, n, ev))
        await ev.wait()


@pytest.fixture
def tally() -> Tally:
    return Tally()
