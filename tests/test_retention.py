"""Retention belongs to the queue: a rule stored in the store, applied by the queue's workers only.

On every backend (autojump clock): a worker prunes its own queue by the
queue's stored rule, or by its process's default when none is stored, and
never another queue. On SQLite files and PostgreSQL, with two backend
objects on one store (two processes of a deployment): a rule stored by one
holds for the workers of the other whatever default it was opened with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import trio
import trio.testing
from backend_factories import Factory
from conftest import trio_clock
from pg_support import store_url

import trioqueue as tq
from trioqueue import Retention, Status, WorkerBuilder
from trioqueue.backends.memory import MemoryDriver

DAY = 86400.0
KINDS = ["memory", "sqlite", "postgres"]
_DEFAULT = Retention()


class Store:
    """One store that several backend objects open, as the processes of a deployment do."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self._memory: MemoryDriver | None = None  # made in the test's Trio run
        self._clock: Callable[[], float] | None = None  # one for every process: one time

    @asynccontextmanager
    async def open(
        self, queue: str, retention: Retention | None = _DEFAULT
    ) -> AsyncIterator[tq.Backend]:
        """Open a backend object of ``queue`` on the store, with its process's default."""
        if self.kind == "memory":
            if self._memory is None:
                self._memory = MemoryDriver()
            b = tq.MemoryBackend(self._memory, queue=queue, retention=retention)
            async with b.running():
                yield b
            return
        # The durable drivers' clock follows Trio's (autojump), as in conftest's factory.
        if self._clock is None:
            self._clock = trio_clock()
        options: dict[str, object] = {"clock": self._clock}
        if self.kind == "postgres":
            options.update(statement_timeout=3600.0, connect_timeout=3600.0)
        async with tq.open_backend(self.url, queue=queue, retention=retention, **options) as b:
            yield b


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock:
    """Autojump; durable drivers work in threads Trio cannot see: after 20 ms of real quiet."""
    return trio.testing.MockClock(autojump_threshold=0 if kind == "memory" else 0.02)


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Store]:
    """The store of a test; the test asks for ``clock`` too (pytest-trio's clock)."""
    if kind == "memory":
        yield Store(kind, "memory://")
        return
    with store_url(kind, tmp_path) as url:
        yield Store(kind, url)


async def _finish(store: Store, queue: str, n: int) -> dict[Status, list[str]]:
    """Push ``n`` tasks of each final status to ``queue`` and let a worker end them."""

    async def handler(x: int) -> int:
        if x < 0:
            raise tq.Abort("negative")
        return x

    ids: dict[Status, list[str]] = {s: [] for s in (Status.DONE, Status.KILLED, Status.CANCELLED)}
    async with store.open(queue, retention=None) as b:
        for i in range(n):
            ids[Status.DONE].append(await b.push(i))
            ids[Status.KILLED].append(await b.push(-1 - i))
            late = await b.push(i, delay=3600)
            assert await b.cancel_task(late)
            ids[Status.CANCELLED].append(late)
        w = WorkerBuilder(f"finisher-{queue}").backend(b).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            for id in ids[Status.DONE]:
                await b.wait_result(id)
            for id in ids[Status.KILLED]:
                with pytest.raises(tq.TaskFailed):
                    await b.wait_result(id)
            w.stop()
    return ids


async def _left(b: tq.Backend, ids: dict[Status, list[str]]) -> dict[Status, int]:
    out = {}
    for status, of in ids.items():
        out[status] = sum([await b.get_task(id) is not None for id in of])
    return out


async def _serve(b: tq.Backend, seconds: float) -> None:
    """Run an idle worker of ``b``'s queue for ``seconds`` (its pruner runs meanwhile)."""

    async def handler(x: int) -> None:
        raise AssertionError("no task of this queue is ready")

    w = WorkerBuilder(f"worker-{b.queue}").backend(b).build(handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.serve)
        await trio.sleep(seconds)
        w.stop()


FULL = {Status.DONE: 2, Status.KILLED: 2, Status.CANCELLED: 2}


@pytest.mark.seconds
async def test_a_worker_prunes_only_its_queue_by_the_queues_stored_rule(
    store: Store, clock: trio.abc.Clock
) -> None:
    fast = Retention(interval=5)  # the default of this process
    async with store.open("admin", fast) as b:
        await b.set_retention("keep", None)
        await b.set_retention("short", Retention(done=timedelta(hours=1), killed=None))
    keep = await _finish(store, "keep", 2)
    short = await _finish(store, "short", 2)
    follows = await _finish(store, "follows", 2)  # no stored rule: each process's default
    await trio.sleep(2 * DAY)
    async with store.open("other", fast) as b:
        await _serve(b, 30)  # a worker of another queue touches none of them
        assert await _left(b, keep) == FULL
        assert await _left(b, short) == FULL
        assert await _left(b, follows) == FULL
    async with store.open("keep", fast) as b:
        await _serve(b, 30)
        assert await _left(b, keep) == FULL  # None: kept forever, whatever the default
    want = {Status.DONE: 0, Status.KILLED: 2, Status.CANCELLED: 2}  # cancelled: 7 days
    async with store.open("short", fast) as b:
        await _serve(b, 30)
        assert await _left(b, short) == want
    async with store.open("follows", fast) as b:
        await _serve(b, 30)
        assert await _left(b, follows) == want
    async with store.open("follows", None) as b:
        await trio.sleep(6 * DAY)
        await _serve(b, 90)  # this process keeps the queues with no stored rule
        assert await _left(b, follows) == want
    async with store.open("short", None) as b:
        await _serve(b, 90)  # the stored rule holds whatever the default
        assert await _left(b, short) == {**want, Status.CANCELLED: 0}
        assert await _left(b, keep) == FULL


async def test_set_retention_checks_its_arguments_and_stores_nothing_wrong(
    open_backend: Factory,
) -> None:
    async with open_backend(queue="jobs") as b:
        with pytest.raises(TypeError, match="Retention or None"):
            await b.set_retention("jobs", timedelta(days=1))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="Retention or None"):
            await b.set_retention("jobs", {"done": 3600})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="negative"):
            await b.set_retention("jobs", Retention(done=timedelta(seconds=-1)))
        with pytest.raises(ValueError):
            await b.set_retention("", None)
        with pytest.raises(TypeError):
            await b.set_retention(None, None)  # type: ignore[arg-type]
        assert await b.retentions() == {}
        assert await b.retention("jobs") == Retention()  # the backend's default


async def test_retention_reads_the_stored_rule_else_the_default(open_backend: Factory) -> None:
    week = timedelta(days=7)
    async with open_backend(queue="jobs", retention=None) as b:
        assert await b.retention() is None  # no stored rule: this backend's default
        rule = Retention(done=timedelta(minutes=30), killed=None, cancelled=week)
        await b.set_retention("jobs", rule)
        await b.set_retention("mail", None)
        assert await b.retention() == rule
        assert await b.retention("mail") is None
        assert await b.retentions() == {"jobs": rule, "mail": None}
        await b.set_retention("jobs", Retention(done=timedelta(0)))  # replaced
        assert await b.retention("jobs") == Retention(done=timedelta(0))
        await b.clear_retention("mail")
        assert await b.retentions() == {"jobs": Retention(done=timedelta(0))}
        assert await b.retention("mail") is None  # back to the default
        kept = Retention(done=None, killed=None, cancelled=None)
        await b.set_retention("mail", kept)
        assert await b.retentions() == {"jobs": Retention(done=timedelta(0)), "mail": None}


# -- the deployment: an app and a CLI worker of another queue on one store --


@pytest.mark.seconds
async def test_a_worker_with_the_default_keeps_another_queues_tasks_kept_by_its_rule(
    store: Store, clock: trio.abc.Clock
) -> None:
    # The app opens the store with retention=None and keeps queue "keep".
    async with store.open("keep", retention=None) as app:
        await app.set_retention("keep", None)
    keep = await _finish(store, "keep", 2)
    other = await _finish(store, "jobs:other", 2)
    await trio.sleep(2 * DAY)
    # `trioqueue worker jobs:other`: its process's default retention (1 d, 7 d, 7 d).
    async with store.open("jobs:other") as worker:
        assert worker.retention_default == Retention()
        await _serve(worker, 120)  # the first prune comes within 60 s
        assert await _left(worker, keep) == FULL
        assert await _left(worker, other) == {Status.DONE: 0, Status.KILLED: 2, Status.CANCELLED: 2}


@pytest.mark.seconds
async def test_a_rule_set_by_another_backend_applies_at_the_workers_next_prune(
    store: Store, clock: trio.abc.Clock
) -> None:
    ids = await _finish(store, "jobs", 2)
    await trio.sleep(3600)
    async with store.open("jobs", retention=None) as b, store.open("admin") as admin:

        async def handler(x: int) -> None:
            raise AssertionError("no task is ready")

        w = WorkerBuilder("jobs").backend(b).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            await trio.sleep(90)  # the worker's default (None) keeps everything
            assert await _left(admin, ids) == FULL
            rule = Retention(done=timedelta(minutes=10), killed=timedelta(minutes=20))
            await admin.set_retention("jobs", rule)
            assert await b.retention() == rule
            await trio.sleep(90)  # its next prune: within 1.5 times its interval (60 s)
            left = await _left(admin, ids)
            assert left == {Status.DONE: 0, Status.KILLED: 0, Status.CANCELLED: 2}
            w.stop()
