"""Bad input on every backend: refused at push with the right error, or killed alone.

Each test ends by checking that a worker still processes good tasks.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from backend_factories import BACKEND_NAMES, BACKENDS, Factory

from trioqueue import (
    Backend,
    CborCodec,
    CodecError,
    JsonCodec,
    Meta,
    Status,
    StoredTask,
    Task,
    TaskId,
    WorkerBuilder,
)


@pytest.fixture(params=BACKEND_NAMES)
def open_backend(request: pytest.FixtureRequest) -> Factory:
    return BACKENDS[request.param]


@dataclass
class Point:
    x: int
    y: int


async def _raw(backend: Backend, id: str, payload: bytes) -> None:
    now = backend.driver.now()
    rec = StoredTask(id=id, queue=backend.queue, payload=payload, run_at=now, created_at=now)
    assert await backend.driver.insert([rec]) == 1


async def _drain(backend: Backend, handler: Any) -> None:
    worker = WorkerBuilder("bad-input").backend(backend).concurrency(2).build(handler)
    with trio.fail_after(30):
        await worker.run(burst=True)


async def _status(backend: Backend, id: str) -> tuple[Status, str]:
    task = await backend.get_task(id)
    assert task is not None, f"task {id} was lost"
    return task.status, task.last_error or ""


def _garbage(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = [b"\xff\xfe\x00not json", b"{", b'{"a": 1', b"\x80" * 40]
    while len(out) < 12:
        blob = rng.randbytes(rng.randint(8, 200))
        try:
            json.loads(blob)
        except ValueError:
            out.append(blob)
    return out


async def test_undecodable_payloads_are_killed_and_the_worker_goes_on(
    open_backend: Factory,
) -> None:
    ran: list[int] = []

    async def handler(n: int) -> int:
        ran.append(n)
        return n * 2

    async with open_backend(queue="garbage") as backend:
        bad = [f"bad-{i:02d}" for i in range(len(_garbage(1)))]
        for id, blob in zip(bad, _garbage(1), strict=True):
            await _raw(backend, id, blob)
        good = [await backend.push(n) for n in range(5)]
        await _drain(backend, handler)
        for id in bad:
            status, error = await _status(backend, id)
            assert status is Status.KILLED
            assert error.startswith("undecodable payload:")
        for id in good:
            assert (await _status(backend, id))[0] is Status.DONE
        assert sorted(ran) == list(range(5))


@pytest.mark.seconds
async def test_args_not_fitting_the_handler_type_kill_naming_the_field(
    open_backend: Factory,
) -> None:
    seen: list[Point] = []

    async def handler(p: Point) -> None:
        seen.append(p)

    async with open_backend(queue="typed") as backend:
        missing = await backend.push({"x": 1})
        wrong = await backend.push({"x": "one", "y": 2})
        fine = await backend.push({"x": 3, "y": 4})
        await _drain(backend, handler)
        status, error = await _status(backend, missing)
        assert status is Status.KILLED
        assert "missing required field `y`" in error
        status, error = await _status(backend, wrong)
        assert status is Status.KILLED
        assert "$.x" in error and "Point" in error
        assert (await _status(backend, fine))[0] is Status.DONE
        assert seen == [Point(3, 4)]


async def test_payloads_over_the_size_limit_are_refused_at_push(open_backend: Factory) -> None:
    async def handler(s: str) -> None:
        pass

    async with open_backend(queue="big", codec=JsonCodec(max_size=100)) as backend:
        with pytest.raises(CodecError, match=r"max_size=100 bytes") as info:
            await backend.push("x" * 200)
        assert type(info.value) is CodecError
        with pytest.raises(CodecError, match=r"max_size=100 bytes"):
            await backend.push_bulk(["ok", "y" * 500])
        assert await backend.counts(queue="big") in ({}, {"big": {}})
        ok = await backend.push("small")
        await _drain(backend, handler)
        assert (await _status(backend, ok))[0] is Status.DONE


HOSTILE = [
    "'; DROP TABLE tasks; --",
    "q\"uo'te`s\\",
    "ünïcødé 日本語 🙂 \u202e",
    "z" * 255,
    "%s %(x)s ? $1 :name",
]


async def test_hostile_queue_names_meta_and_ids_round_trip(open_backend: Factory) -> None:
    meta = {
        "sql": "'; DROP TABLE tasks; --",
        "quotes": "\"'`\\",
        "unicode": "日本語 🙂 \u202e",
        "long": "m" * 20_000,
        "nested": {"a": ["'", '"', {"b": "--"}]},
    }
    got_meta: list[dict[str, Any]] = []

    async def handler(args: str, m: Meta) -> str:
        got_meta.append(dict(m))
        return args

    async with open_backend(queue=HOSTILE[0]) as backend:
        ids = []
        for i, queue in enumerate(HOSTILE):
            tid = f"{queue[:200]}#{i}"
            new = Task(queue, id=TaskId(tid), queue=queue, meta=Meta(meta))
            assert await backend.push_task(new) == tid
            ids.append(tid)
        for tid, queue in zip(ids, HOSTILE, strict=True):
            task = await backend.get_task(tid)
            assert task is not None
            assert (task.queue, task.args, dict(task.meta)) == (queue, queue, meta)
            listed = await backend.list_tasks(queue=queue)
            assert [t.id for t in listed] == [tid]
        counts = await backend.counts()
        assert {q: sum(c.values()) for q, c in counts.items()} == {q: 1 for q in HOSTILE}
        await _drain(backend, handler)
        assert got_meta == [meta]
        done = await backend.get_task(ids[0])
        assert done is not None and done.status is Status.DONE and done.result == HOSTILE[0]


@pytest.mark.parametrize(
    ("push", "error"),
    [
        ({"queue": "a\x00b"}, ValueError),
        ({"id": "id\x00"}, ValueError),
        ({"meta": {"k": "v\x00"}}, CodecError),
        ({"meta": {"k\x00": "v"}}, CodecError),
        ({"meta": {"deep": ["\x00"]}}, CodecError),
    ],
    ids=["queue", "id", "meta-value", "meta-key", "meta-nested"],
)
async def test_nul_bytes_are_refused_at_push(
    open_backend: Factory, push: dict[str, Any], error: type[Exception]
) -> None:
    async def handler(args: str) -> None:
        pass

    async with open_backend(queue="nul") as backend:
        with pytest.raises(error) as info:
            if "queue" in push:
                await backend.push_task(Task("x", queue=push["queue"]))
            else:
                await backend.push("x", **push)
        assert type(info.value) is error
        assert "NUL" in str(info.value)
        assert await backend.counts() in ({}, {"nul": {}})
        ok = await backend.push("fine")
        await _drain(backend, handler)
        assert (await _status(backend, ok))[0] is Status.DONE


async def test_nul_in_the_backend_queue_name_is_refused(open_backend: Factory) -> None:
    with pytest.raises(ValueError, match="NUL"):
        async with open_backend(queue="bad\x00queue"):
            pass  # pragma: no cover


def _nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"  # [[[...[0]...]]]


CBOR_BAD = {
    "deep": _nested(1000),
    "deeper-than-limit": _nested(40),
    "huge-length": b"\x5b\x00\x00\x00\x10\x00\x00\x00\x00" + b"a" * 16,
    "over-max-size": b"\x59\x20\x00" + b"a" * 0x2000,
    "indefinite": b"\x9f\x01\x02\xff",
    "duplicate-keys": b"\xa2\x61a\x01\x61a\x02",
    "truncated": b"\x82\x01",
}


async def test_deep_or_huge_cbor_is_refused_by_the_decoding_limits(
    open_backend: Factory,
) -> None:
    codec = CborCodec(max_size=4096, max_depth=16)
    for name, blob in CBOR_BAD.items():
        with pytest.raises(CodecError) as info:
            codec.decoder(Any)(blob)
        assert type(info.value) is CodecError, name
    with pytest.raises(CodecError, match="max_size=4096"):
        codec.encode("a" * 5000)
    ran: list[Any] = []

    async def handler(args: Any) -> None:
        ran.append(args)

    async with open_backend(queue="cbor", codec=codec) as backend:
        for name, blob in CBOR_BAD.items():
            await _raw(backend, name, blob)
        with pytest.raises(CodecError, match="max_size=4096"):
            await backend.push(["x" * 1000] * 5)
        ok = await backend.push({"nested": [[[1]]]})
        await _drain(backend, handler)
        for name in CBOR_BAD:
            status, error = await _status(backend, name)
            assert status is Status.KILLED, name
            assert error.startswith("undecodable payload:"), name
        assert (await _status(backend, ok))[0] is Status.DONE
        assert ran == [{"nested": [[[1]]]}]


async def test_meta_over_the_limit_is_refused_at_push(open_backend: Factory) -> None:
    big = {"blob": "m" * (64 * 1024)}  # 64 KiB of text: over the limit once in JSON
    async with open_backend() as backend:
        with pytest.raises(
            CodecError, match=r"meta is 65547 bytes as JSON, over the limit of 65536"
        ):
            await backend.push(1, meta=big, id="big-meta")
        with pytest.raises(CodecError, match="over the limit of 65536 bytes"):
            await backend.push_task(Task(1, id=TaskId("big-meta"), meta=Meta(big)))
        assert await backend.get_task("big-meta") is None
        fits = {"blob": "m" * (64 * 1024 - 11)}  # exactly the limit in JSON
        await backend.push(1, meta=fits, id="fits")
        task = await backend.get_task("fits")
        assert task is not None and task.meta == fits
