"""Hostile values never crash a worker, never poison a queue and never break a listing."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import trio
from conftest import Tally

import trioqueue as tq
from trioqueue import EventKind, Status, WorkerBuilder
from trioqueue.layers import LogLayer


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


async def test_a_deeply_nested_payload_is_killed_and_the_worker_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[int] = []

    async def handler(args: Any) -> None:
        seen.append(args)

    async with tq.MemoryBackend.open() as b:
        deep = tq.StoredTask(id="deep", queue="default", payload=b"[" * 5000 + b"]" * 5000)
        await b.driver.insert([deep])
        await b.push(7)
        await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        killed = await b.get_task("deep")
        assert killed is not None and killed.status is Status.KILLED
        assert "nested too deeply" in (killed.last_error or "")
        assert seen == [7]
        assert len(await b.list_tasks()) == 2  # the listing still works


async def test_a_result_that_cannot_be_encoded_still_settles_done(
    autojump_clock: trio.abc.Clock, tally: Tally
) -> None:
    async def handler(n: int) -> Any:
        return nested(5000)

    async with tq.MemoryBackend.open() as b:
        tid = await b.push(1)
        await WorkerBuilder("w").backend(b).on_event(tally).build(handler).run(burst=True)
        task = await b.get_task(tid)
    assert task is not None and (task.status, task.result, task.attempts) == (Status.DONE, None, 1)
    assert tally.counts[EventKind.TASK_DONE] == 1


async def test_pushing_a_deeply_nested_value_is_a_codec_error(
    memory_backend: tq.MemoryBackend,
) -> None:
    with pytest.raises(tq.CodecError):
        await memory_backend.push(nested(5000))
    assert await memory_backend.counts() == {}


async def test_cbor_shared_references_are_refused(autojump_clock: trio.abc.Clock) -> None:
    async def handler(args: Any) -> None:
        return None

    async with tq.MemoryBackend.open(codec=tq.CborCodec()) as b:
        cyclic = bytes.fromhex("d81c81d81d00")  # [<shared 0>]: a list holding itself
        await b.driver.insert([tq.StoredTask(id="cycle", queue="default", payload=cyclic)])
        await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        task = await b.get_task("cycle")
    assert task is not None and task.status is Status.KILLED
    assert "undecodable payload" in (task.last_error or "")
    assert "semantic tag 29" in (task.last_error or "")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"priority": 2**63}, "priority must be between"),
        ({"priority": -(2**63) - 1}, "priority must be between"),
        ({"max_attempts": 2**31}, "max_attempts must be between"),
        ({"delay": 1e19}, "past the year 9999"),
    ],
)
async def test_out_of_range_options_are_refused_before_storage(
    memory_backend: tq.MemoryBackend, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await memory_backend.push("x", **options)
    await memory_backend.push("fine", priority=2**63 - 1, max_attempts=2**31 - 1)
    assert await memory_backend.counts() == {"default": {Status.PENDING: 1}}


async def test_layers_see_a_deadline_as_a_failure_not_a_release(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(n: int) -> None:
        await trio.sleep(10)

    caplog.set_level(logging.INFO, logger="trioqueue.task")
    async with tq.MemoryBackend.open() as b:
        await b.push(1, max_attempts=2)
        w = WorkerBuilder("w").backend(b).layer(LogLayer()).timeout(1).backoff(tq.Fixed(0))
        await w.build(slow).run(burst=True)
        assert await b.counts() == {"default": {Status.KILLED: 1}}
    outcomes = [r.outcome for r in caplog.records if hasattr(r, "outcome")]
    assert outcomes == ["failed", "killed"]


def stringref_bomb(length: int, copies: int) -> bytes:
    """A CBOR list of ``copies`` references to one ``length``-byte string (tags 256 and 25)."""
    import cbor2

    head = cbor2.dumps("x" * length)
    ref = bytes.fromhex("d81900")  # 25(0): the first string of the namespace
    count = cbor2.dumps(copies + 1)  # an array header of copies + 1 items (major type 4)
    array = bytes([0x80 | count[0] & 0x1F]) + count[1:]
    return bytes.fromhex("d90100") + array + head + ref * copies


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (stringref_bomb(10_000, 30_000), "semantic tag 25"),  # 300 MB once expanded
        (bytes.fromhex("d81900"), "semantic tag 25"),
        (bytes.fromhex("0102"), "1 bytes after the first item"),
    ],
)
def test_cbor_string_references_and_trailing_bytes_are_refused(payload: bytes, reason: str) -> None:
    assert len(payload) < tq.CborCodec().max_size
    with pytest.raises(tq.CodecError, match=reason):
        tq.CborCodec().decoder(Any)(payload)


async def test_a_cbor_string_reference_bomb_is_killed_and_the_worker_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[Any] = []

    async def handler(args: Any) -> None:
        seen.append(args)

    async with tq.MemoryBackend.open(codec=tq.CborCodec()) as b:
        bomb = stringref_bomb(10_000, 30_000)
        await b.driver.insert([tq.StoredTask(id="bomb", queue="default", payload=bomb)])
        await b.push("fine")
        await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        task = await b.get_task("bomb")
    assert task is not None and task.status is Status.KILLED
    assert "semantic tag 25" in (task.last_error or "")
    assert seen == ["fine"]


def cyclic_meta() -> dict[str, Any]:
    meta: dict[str, Any] = {}
    meta["self"] = meta
    return meta


def deep_meta(depth: int) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for _ in range(depth):
        meta = {"k": meta}
    return meta


@pytest.mark.parametrize("meta", [cyclic_meta(), deep_meta(5000)], ids=["cyclic", "deep"])
async def test_a_cyclic_or_too_deep_meta_is_a_codec_error(
    memory_backend: tq.MemoryBackend, meta: dict[str, Any]
) -> None:
    with pytest.raises(tq.CodecError, match="meta is cyclic or nested too deeply"):
        await memory_backend.push(1, meta=meta)
    assert await memory_backend.counts() == {}


@pytest.mark.parametrize(
    ("payload", "lone"),
    [
        (rb'"\ud800"', r"\ud800"),
        (rb'["ok", "\udc00x"]', r"\udc00"),
        (rb'{"a": "\uD83D\u0041"}', r"\ud83d"),
        (rb'"\\\ud800"', r"\ud800"),  # an escaped backslash, then the surrogate
    ],
)
def test_an_escaped_lone_surrogate_in_json_is_named(payload: bytes, lone: str) -> None:
    with pytest.raises(tq.CodecError, match=f"escaped lone surrogate \\({re.escape(lone)}\\)"):
        tq.JsonCodec().decoder(Any)(payload)


@pytest.mark.parametrize("payload", [rb'"\ud83d\ude00"', rb'"\\ud800"'], ids=["pair", "text"])
def test_a_surrogate_pair_or_an_escaped_backslash_is_not_a_lone_surrogate(
    payload: bytes,
) -> None:
    assert tq.JsonCodec().decoder(str)(payload) in ("\U0001f600", "\\ud800")
    with pytest.raises(tq.CodecError) as info:
        tq.JsonCodec().decoder(str)(payload[:-1])  # truncated: some other error
    assert "surrogate" not in str(info.value)


async def test_a_stored_lone_surrogate_payload_is_killed_with_the_reason(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with tq.MemoryBackend.open() as b:
        await b.driver.insert([tq.StoredTask(id="lone", queue="default", payload=rb'"\ud800"')])
        await WorkerBuilder("w").backend(b).build(ignore_args).run(burst=True)
        task = await b.get_task("lone")
    assert task is not None and task.status is Status.KILLED
    assert "escaped lone surrogate (\\ud800)" in (task.last_error or "")


async def ignore_args(args: Any) -> None:
    return None
