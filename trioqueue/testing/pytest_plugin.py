"""A pytest plugin for tests of your own handlers and of code that pushes.

Installed with trioqueue and loaded by pytest by itself (entry point
``trioqueue``); it needs pytest-trio (``pip install trioqueue[pytest]``).

- The ``trioqueue_backend`` fixture: a fresh ``MemoryBackend``; a test using
  it runs on Trio's autojump clock (delays, retries and timeouts take no
  real time) unless it asks for another clock.
- ``run_until_idle(worker)``: run a worker until its queue has nothing left to do.
- ``assert_pushed(backend, queue=..., args=...)``: what was pushed, checked.
- ``eager(worker)``: a backend whose pushes run the task before they return.

Example::

    async def test_welcome_mail(trioqueue_backend):
        await signup(trioqueue_backend, "a@example.com")  # your code, which pushes
        await assert_pushed(trioqueue_backend, args={"to": "a@example.com"})
        worker = WorkerBuilder("mail").backend(trioqueue_backend).build(send_mail)
        await run_until_idle(worker)
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from .._backend import Backend
from .._errors import TaskCancelled, TaskFailed
from .._task import Status, Task, TaskId
from .._worker import Worker
from ..backends.memory import MemoryBackend

__all__ = ["EagerBackend", "assert_pushed", "eager", "run_until_idle", "trioqueue_backend"]

#: The fixtures whose tests run on the autojump clock.
AUTOJUMP_FIXTURES = frozenset({"trioqueue_backend"})
_UNFINISHED = (Status.PENDING, Status.FAILED, Status.QUEUED, Status.RUNNING)
_ANY: Any = object()


def _run_on_autojump(fn: Any, *, clock: Any = None, instruments: Any = ()) -> Any:
    # pytest-trio's runner, with the autojump clock when the test asked for no clock.
    if clock is None:
        clock = MockClock(autojump_threshold=0)
    return trio.run(fn, clock=clock, instruments=instruments)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the async tests that use ``trioqueue_backend`` with Trio, on the autojump clock."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        fn = getattr(item, "obj", None)
        if AUTOJUMP_FIXTURES.intersection(names) and inspect.iscoroutinefunction(fn):
            item.add_marker(pytest.mark.trio(run=_run_on_autojump), append=False)


@pytest.fixture
async def trioqueue_backend() -> AsyncIterator[MemoryBackend]:
    """A fresh memory backend (queue ``"default"``) on the autojump clock, closed after the test."""
    async with MemoryBackend.open() as backend:
        yield backend


async def _unfinished(backend: Backend, queue: str) -> int:
    counts = (await backend.counts(queue=queue)).get(queue, {})
    return sum(counts.get(s, 0) for s in _UNFINISHED)


async def run_until_idle(worker: Worker, *, scheduled: bool = True) -> None:
    """Run ``worker`` until its queue has nothing left to run, then stop it.

    Args:
      worker: A worker that is not running.
      scheduled: Also wait for tasks scheduled later (retries with backoff,
        delays, snoozes) and run them; on the autojump clock that takes no
        real time. False stops as soon as nothing is ready now.

    Raises:
      Whatever the worker raises (a storage error it gave up on).
    """
    backend, queue = worker.backend, worker.backend.queue
    while True:
        await worker.run(burst=True)
        if not scheduled or not await _unfinished(backend, queue):
            return
        next_at = await backend.driver.next_run_at(queue)
        if next_at is not None:
            await trio.sleep(max(0.0, next_at - backend.driver.now()))
        else:
            await trio.sleep(worker.poll_interval)  # held by another consumer, or paused


def _plain(backend: Backend, args: Any) -> Any:
    # Args as a stored task shows them: encoded, then decoded as plain data.
    return backend.codec.decoder(Any)(backend.codec.encode(args))


async def assert_pushed(
    backend: Backend,
    *,
    queue: str | None = None,
    args: Any = _ANY,
    count: int | None = None,
    status: Status | str | None = None,
) -> list[Task[Any]]:
    """Assert that tasks matching the filters are stored, and return them (oldest first).

    Args:
      backend: The backend the code under test pushed to.
      queue: Only this queue (default: the backend's).
      args: Only tasks whose args equal this (compared as stored: a
        dataclass equals its dict form).
      count: Exactly this many (default: at least one).
      status: Only tasks in this status.

    Raises:
      AssertionError: naming what was pushed instead.
    """
    queue = backend.queue if queue is None else queue
    tasks: list[Task[Any]] = []
    while True:
        page = await backend.list_tasks(queue=queue, status=status, limit=1000, offset=len(tasks))
        tasks += page
        if len(page) < 1000:
            break
    tasks.reverse()
    want = _ANY if args is _ANY else _plain(backend, args)
    found = [t for t in tasks if want is _ANY or t.args == want]
    if (count is None and not found) or (count is not None and len(found) != count):
        expected = "some" if count is None else str(count)
        what = "any args" if args is _ANY else f"args={want!r}"
        pushed = ", ".join(repr(t.args) for t in tasks[:10]) or "nothing"
        more = f" (and {len(tasks) - 10} more)" if len(tasks) > 10 else ""
        raise AssertionError(
            f"expected {expected} task(s) with {what} in queue {queue!r}, found "
            f"{len(found)}; pushed there: {pushed}{more}"
        )
    return found


class EagerBackend:
    """A backend whose pushes run their tasks to the end before returning (see ``eager``).

    Every other attribute is the wrapped backend's.
    """

    def __init__(self, worker: Worker, *, propagate: bool = True) -> None:
        self.worker = worker
        self.backend = worker.backend
        self.propagate = propagate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def _ran(self, ids: Iterable[str]) -> None:
        await run_until_idle(self.worker)
        if not self.propagate:
            return
        for id in ids:
            task = await self.backend.get_task(id)
            if task is not None and task.status is Status.KILLED:
                raise TaskFailed(task)
            if task is not None and task.status is Status.CANCELLED:
                raise TaskCancelled(task)

    async def push(self, args: Any, **options: Any) -> TaskId:
        """``Backend.push``, then run the worker until idle.

        Raises:
          TaskFailed: the task ended KILLED (with ``propagate``).
        """
        id = await self.backend.push(args, **options)
        await self._ran([id])
        return id

    async def push_task(self, task: Task[Any], **options: Any) -> TaskId:
        """``Backend.push_task``, then run the worker until idle (raises as ``push``)."""
        id = await self.backend.push_task(task, **options)
        await self._ran([id])
        return id

    async def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """``Backend.push_bulk``, then run the worker until idle (raises as ``push``)."""
        ids = await self.backend.push_bulk(items)
        await self._ran(ids)
        return ids

    def __repr__(self) -> str:
        return f"<EagerBackend {self.backend!r} worker={self.worker.name!r}>"


def eager(worker: Worker, *, propagate: bool = True) -> EagerBackend:
    """Return a backend for code under test whose pushes run their task inline.

    A push stores the task, runs ``worker`` until its queue is idle
    (``run_until_idle``) and only then returns, so the test sees the task's
    effects at once.

    Args:
      worker: The worker that runs the pushed tasks (not running).
      propagate: Raise ``TaskFailed`` from the push when the task ended
        KILLED (``TaskCancelled`` when cancelled).
    """
    return EagerBackend(worker, propagate=propagate)
