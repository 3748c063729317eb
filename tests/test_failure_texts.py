"""What a failed attempt leaves on record: a bounded error, a bounded traceback, a result note."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import trioqueue as tq
from trioqueue import Status, WorkerBuilder
from trioqueue._outcome import MAX_ERROR, MAX_TRACEBACK, bounded, decide, format_traceback


def _raise_huge() -> None:
    raise ValueError("x" * 10_000_000)


async def test_a_failure_stores_a_bounded_error_and_traceback_and_logs_them(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def handler(n: int) -> None:
        _raise_huge()

    async with tq.MemoryBackend.open() as b:
        tid = await b.push(1, max_attempts=1)
        with caplog.at_level(logging.WARNING, logger="trioqueue.worker"):
            await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        task = await b.get_task(tid)
    assert task is not None and task.status is Status.KILLED and task.attempts == 1
    error, trace = task.last_error or "", task.traceback or ""
    assert len(error) <= MAX_ERROR and error.startswith("ValueError: xxx")
    assert "[truncated: 10,000,012 characters," in error and "\n" not in error
    assert len(trace) <= MAX_TRACEBACK
    assert trace.startswith("Traceback (most recent call last):")
    assert "in _raise_huge" in trace and "[truncated: " in trace
    assert trace.rstrip().endswith("xxx")  # the tail: the exception's own line
    records = [r for r in caplog.records if r.name == "trioqueue.worker"]
    assert [r.levelname for r in records] == ["ERROR"]
    for r in records:
        assert len(r.getMessage()) < MAX_ERROR + 200
        assert r.traceback == trace  # type: ignore[attr-defined]


async def test_abort_and_retry_after_store_no_traceback(autojump_clock: trio.abc.Clock) -> None:
    async def handler(n: int) -> None:
        raise tq.Abort("no") if n else tq.RetryAfter(1.0, "later")

    async with tq.MemoryBackend.open() as b:
        aborted = await b.push(1)
        retried = await b.push(0, max_attempts=1)
        await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        tasks = {t.id: t for t in await b.list_tasks()}
    assert (tasks[aborted].last_error, tasks[aborted].traceback) == ("aborted: no", None)
    assert (tasks[retried].status, tasks[retried].traceback) == (Status.KILLED, None)


async def test_a_result_over_the_codec_limit_is_noted_on_the_task(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def handler(n: int) -> Any:
        return "y" * 500

    async with tq.MemoryBackend.open(codec=tq.JsonCodec(max_size=100)) as b:
        tid = await b.push(1)
        await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        task = await b.get_task(tid)
    assert task is not None and (task.status, task.result) == (Status.DONE, None)
    assert task.last_error == (
        "result not stored: payload is 502 bytes, over the json codec's limit of max_size=100 bytes"
    )


def test_bounded_keeps_short_text_and_marks_what_it_cuts() -> None:
    assert bounded("short") == "short"
    assert bounded("a\x00b") == "a\\x00b"
    cut = bounded("h" * 500 + "t" * 500, 200)
    assert len(cut) <= 200 and cut.startswith("hhh") and cut.endswith("ttt")
    assert "[truncated: 1,000 characters," in cut


def test_a_traceback_of_an_exception_without_text_still_names_the_type() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    text = format_traceback(Weird())
    assert "Weird" in text and "str() failed" in text


async def test_a_timed_out_attempt_stores_where_it_was_waiting(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def stuck_in_here(n: int) -> None:
        await trio.sleep(100)

    async with tq.MemoryBackend.open() as b:
        tid = await b.push(1, max_attempts=1)
        await WorkerBuilder("w").backend(b).timeout(1.0).build(stuck_in_here).run(burst=True)
        task = await b.get_task(tid)
    assert task is not None and task.status is Status.KILLED
    assert task.last_error == "TaskTimeout: attempt 1 ran past its 1s deadline"
    trace = task.traceback or ""
    assert "in stuck_in_here" in trace and "await trio.sleep(100)" in trace
    assert trace.rstrip().endswith("TaskTimeout: attempt 1 ran past its 1s deadline")


def test_only_the_worker_asks_for_the_traceback() -> None:
    try:
        _raise_huge()
    except ValueError as exc:
        error = exc
    assert decide(1, 1, error).traceback is None  # what layers ask: the label, cheaply
    assert "in _raise_huge" in (decide(1, 1, error, with_traceback=True).traceback or "")
