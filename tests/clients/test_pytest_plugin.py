"""The pytest plugin as a user's tests use it: the fixture, run_until_idle, assert_pushed, eager."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

from trioqueue import MemoryBackend, RetryAfter, Status, WorkerBuilder
from trioqueue.testing.pytest_plugin import assert_pushed, eager, run_until_idle


@dataclass
class Mail:
    to: str


SENT: list[str] = []


async def send_mail(mail: Mail) -> str:
    SENT.append(mail.to)
    return f"sent to {mail.to}"


async def signup(backend: MemoryBackend, address: str) -> None:
    """Code under test: it pushes a welcome mail."""
    await backend.push(Mail(address), delay=60)


@pytest.fixture(autouse=True)
def _clear() -> None:
    SENT.clear()


async def test_the_fixture_runs_on_the_autojump_clock(trioqueue_backend: MemoryBackend) -> None:
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
    before = trio.current_time()
    await trio.sleep(3600)  # virtual: jumps at once
    assert trio.current_time() - before == pytest.approx(3600)


async def test_assert_pushed_finds_the_task_as_its_dataclass(
    trioqueue_backend: MemoryBackend,
) -> None:
    await signup(trioqueue_backend, "a@example.com")
    (task,) = await assert_pushed(trioqueue_backend, args=Mail("a@example.com"), count=1)
    assert task.args == {"to": "a@example.com"}
    assert task.status is Status.PENDING


async def test_assert_pushed_says_what_was_pushed_instead(trioqueue_backend: MemoryBackend) -> None:
    await signup(trioqueue_backend, "a@example.com")
    with pytest.raises(AssertionError, match=r"found 0; pushed there: \{'to': 'a@example.com'\}"):
        await assert_pushed(trioqueue_backend, args=Mail("b@example.com"))
    with pytest.raises(AssertionError, match="expected 2 task"):
        await assert_pushed(trioqueue_backend, count=2)
    with pytest.raises(AssertionError, match="pushed there: nothing"):
        await assert_pushed(trioqueue_backend, queue="other")


async def test_run_until_idle_runs_delayed_tasks_and_retries(
    trioqueue_backend: MemoryBackend,
) -> None:
    tries: list[int] = []

    async def flaky(mail: Mail) -> str:
        tries.append(len(tries))
        if len(tries) < 3:
            raise RetryAfter(30)
        return await send_mail(mail)

    await signup(trioqueue_backend, "a@example.com")
    worker = WorkerBuilder("mail").backend(trioqueue_backend).build(flaky)
    await run_until_idle(worker)
    assert SENT == ["a@example.com"] and len(tries) == 3
    (task,) = await assert_pushed(trioqueue_backend, status=Status.DONE)
    assert task.result == "sent to a@example.com"


async def test_run_until_idle_can_stop_at_what_is_ready_now(
    trioqueue_backend: MemoryBackend,
) -> None:
    await signup(trioqueue_backend, "later@example.com")  # in 60 s
    await trioqueue_backend.push(Mail("now@example.com"))
    worker = WorkerBuilder("mail").backend(trioqueue_backend).build(send_mail)
    await run_until_idle(worker, scheduled=False)
    assert SENT == ["now@example.com"]
    await assert_pushed(trioqueue_backend, args=Mail("later@example.com"), status="pending")


async def test_eager_pushes_run_the_handler_before_returning(
    trioqueue_backend: MemoryBackend,
) -> None:
    worker = WorkerBuilder("mail").backend(trioqueue_backend).build(send_mail)
    backend = eager(worker)
    tid = await backend.push(Mail("a@example.com"))
    assert SENT == ["a@example.com"]
    assert await backend.wait_result(tid) == "sent to a@example.com"
    ids = await backend.push_bulk([Mail("b@example.com"), Mail("c@example.com")])
    assert sorted(SENT) == ["a@example.com", "b@example.com", "c@example.com"]
    assert len(ids) == 2


async def test_eager_raises_when_the_task_ends_killed(trioqueue_backend: MemoryBackend) -> None:
    from trioqueue import Abort, TaskFailed

    async def refuse(mail: Mail) -> None:
        raise Abort(f"no mail to {mail.to}")

    backend = eager(WorkerBuilder("mail").backend(trioqueue_backend).build(refuse))
    with pytest.raises(TaskFailed, match=r"no mail to x@example\.com"):
        await backend.push(Mail("x@example.com"))
    quiet = eager(WorkerBuilder("mail").backend(trioqueue_backend).build(refuse), propagate=False)
    tid = await quiet.push(Mail("y@example.com"))
    task = await trioqueue_backend.get_task(tid)
    assert task is not None and task.status is Status.KILLED
