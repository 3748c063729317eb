from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

import trioqueue as tq


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
