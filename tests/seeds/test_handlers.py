"""The examples of the "Task handlers" manual page, in trioqueue's Python form."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio

import trioqueue as tq
from trioqueue import Data, Status, Task, TaskId, WorkerBuilder, WorkerContext


@dataclass
class Email:
    to: str
    subject: str


@dataclass
class State:
    sent: list[str] = field(default_factory=list)


async def send_email(email: Email, state: Data[State]) -> None:
    state.sent.append(f"{email.to}:{email.subject}")


seen: list[tuple[str, str, TaskId]] = []


async def complex_handler(
    email: Email, state: Data[State], worker: WorkerContext, task_id: TaskId
) -> str:
    seen.append((email.to, worker.name, task_id))
    state.sent.append(email.to)
    return f"sent to {email.to}"


class EmailService:
    """A class-based service: it receives the whole Task."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def __call__(self, task: Task[Email]) -> str:
        assert isinstance(task.args, Email)
        self.state.sent.append(task.args.to)
        return task.args.subject.upper()


async def test_async_function_with_data(autojump_clock: trio.abc.Clock) -> None:
    state = State()
    async with tq.MemoryBackend.open() as backend:
        await backend.push(Email("a@example.com", "hello"))
        worker = WorkerBuilder("email_worker").backend(backend).data(state).build(send_email)
        await worker.run(burst=True)
        assert state.sent == ["a@example.com:hello"]
        assert await backend.counts() == {"default": {Status.DONE: 1}}


async def test_complex_handler_gets_each_injected_part(autojump_clock: trio.abc.Clock) -> None:
    state = State()
    seen.clear()
    async with tq.MemoryBackend.open() as backend:
        tid = await backend.push(Email("b@example.com", "hi"))
        worker = WorkerBuilder("email_worker").backend(backend).data(state).build(complex_handler)
        await worker.run(burst=True)
        assert seen == [("b@example.com", "email_worker", tid)]
        done = await backend.get_task(tid)
        assert done is not None and done.status is Status.DONE
        assert done.result == "sent to b@example.com"


async def test_class_based_service(autojump_clock: trio.abc.Clock) -> None:
    state = State()
    async with tq.MemoryBackend.open() as backend:
        tid = await backend.push(Email("c@example.com", "subject"))
        worker = WorkerBuilder("email_worker").backend(backend).build(EmailService(state))
        await worker.run(burst=True)
        task = await backend.get_task(tid)
        assert task is not None and task.result == "SUBJECT"
        assert state.sent == ["c@example.com"]


async def test_complete_example_three_workers(autojump_clock: trio.abc.Clock) -> None:
    """The page's main(): three workers, each on its own memory storage."""
    results = []
    for handler in (send_email, complex_handler, EmailService(State())):
        state = State()
        async with tq.MemoryBackend.open() as storage:
            await storage.push(Email("d@example.com", "s"))
            worker = WorkerBuilder("email_worker").backend(storage).data(state).build(handler)
            await worker.run(burst=True)
            results.append(await storage.counts())
    assert results == [{"default": {Status.DONE: 1}}] * 3


@dataclass
class Msg:
    id: int


async def test_an_invalid_handler_gets_a_precise_error() -> None:
    """Apalis's compiler error is vague here; ours names the parameter and the fix."""

    async def handle_task(item: Msg, wrk: int) -> None:
        return None

    async with tq.MemoryBackend.open() as backend:
        with pytest.raises(tq.HandlerError) as err:
            WorkerBuilder("w").backend(backend).build(handle_task)
        message = str(err.value)
        assert "parameter 'wrk'" in message and "handle_task" in message
        assert "Data[int]" in message and "WorkerBuilder.data" in message

        async def needs_state(item: Msg, state: Data[State]) -> None:
            return None

        with pytest.raises(tq.HandlerError, match=r"add \.data\(State\(\.\.\.\)\)"):
            WorkerBuilder("w").backend(backend).build(needs_state)

        def not_async(item: Msg) -> None:
            return None

        with pytest.raises(tq.HandlerError, match="not async"):
            WorkerBuilder("w").backend(backend).build(not_async)

        async def unannotated(item: Msg, extra) -> None:  # type: ignore[no-untyped-def]
            return None

        with pytest.raises(tq.HandlerError, match=r"parameter 'extra' .* has no annotation"):
            WorkerBuilder("w").backend(backend).build(unannotated)

        with pytest.raises(tq.HandlerError, match="is a class, not a service"):
            WorkerBuilder("w").backend(backend).build(EmailService)


class PlainMsg:
    """A plain class: no codec can decode a payload into it."""

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass
class HoldsPlain:
    items: list[PlainMsg]


async def test_a_plain_class_as_args_type_fails_at_build(
    memory_backend: tq.MemoryBackend,
) -> None:
    async def handle_task(item: PlainMsg, wrk: WorkerContext) -> None:
        return None

    async def nested(item: HoldsPlain) -> None:
        return None

    async def as_task(task: tq.Task[PlainMsg]) -> None:
        return None

    builder = WorkerBuilder("w").backend(memory_backend)
    with pytest.raises(tq.HandlerError) as info:
        builder.build(handle_task)
    message = str(info.value)
    assert "parameter 'item' of handler" in message and "handle_task" in message
    assert "annotated PlainMsg" in message and "PlainMsg is a plain class" in message
    assert "@dataclass, a msgspec.Struct, a TypedDict" in message
    with pytest.raises(tq.HandlerError, match=r"annotated HoldsPlain \(it holds PlainMsg\)"):
        builder.build(nested)
    with pytest.raises(tq.HandlerError, match=r"parameter 'task' .* annotated PlainMsg"):
        builder.build(as_task)
