"""TraceLayer and traced_push: PRODUCER and CONSUMER spans joined through the task's meta."""

from __future__ import annotations

import sys

import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from trioqueue import Attempt, Fixed, MemoryBackend, ServiceBuilder, Task, WorkerBuilder
from trioqueue.layers import RetryLayer, TraceLayer, inject_trace_context, traced_push


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_kind(finished: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in finished if s.kind is kind]


async def test_consumer_spans_are_children_of_and_linked_to_the_producer(
    autojump_clock: trio.abc.Clock, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans

    async def handler(x: int, attempt: Attempt) -> int:
        if attempt == 1:
            raise ValueError("first")
        return x

    async with MemoryBackend.open(queue="mail") as backend:
        tid = await traced_push(backend, 3, tracer_provider=provider, priority=2)
        stored = await backend.get_task(tid)
        assert stored is not None and stored.priority == 2
        assert set(stored.meta) >= {"traceparent"}
        builder = WorkerBuilder("w").backend(backend).layer(TraceLayer(provider))
        builder.layer(RetryLayer(Fixed(1.0)))
        await builder.build(handler).run(burst=True)
        await trio.sleep(1)
        await builder.build(handler).run(burst=True)

    finished = exporter.get_finished_spans()
    [producer] = by_kind(finished, SpanKind.PRODUCER)
    consumers = by_kind(finished, SpanKind.CONSUMER)
    assert producer.name == "send mail"
    assert dict(producer.attributes or {}) == {
        "messaging.system": "trioqueue",
        "messaging.destination.name": "mail",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.message.id": tid,
    }
    assert [c.name for c in consumers] == ["process mail", "process mail"]
    pctx = producer.get_span_context()
    assert pctx is not None
    for n, c in enumerate(consumers, start=1):
        assert c.parent is not None
        assert (c.parent.trace_id, c.parent.span_id) == (pctx.trace_id, pctx.span_id)
        assert [(lk.context.trace_id, lk.context.span_id) for lk in c.links] == [
            (pctx.trace_id, pctx.span_id)
        ]
        attrs = dict(c.attributes or {})
        assert attrs["messaging.system"] == "trioqueue"
        assert attrs["messaging.destination.name"] == "mail"
        assert attrs["messaging.message.id"] == tid
        assert attrs["messaging.operation.name"] == "process"
        assert attrs["trioqueue.attempt"] == n
    assert dict(consumers[0].attributes or {})["trioqueue.outcome"] == "retry"
    assert consumers[0].status.status_code is StatusCode.ERROR
    assert dict(consumers[1].attributes or {})["trioqueue.outcome"] == "done"
    assert consumers[1].status.status_code is StatusCode.UNSET


async def test_inject_trace_context_carries_the_current_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("app")

    async def handler(x: int) -> None:
        return None

    with tracer.start_as_current_span("request") as request:
        meta = inject_trace_context({"tenant": "acme"})
    assert meta["tenant"] == "acme"
    svc = ServiceBuilder().layer(TraceLayer(provider)).service(handler)
    await svc(Task(1, queue="q", attempts=1, meta=meta))  # type: ignore[arg-type]
    [consumer] = by_kind(exporter.get_finished_spans(), SpanKind.CONSUMER)
    assert consumer.parent is not None
    assert consumer.parent.span_id == request.get_span_context().span_id
    assert consumer.context is not None
    assert consumer.context.trace_id == request.get_span_context().trace_id


async def test_a_task_without_context_gets_a_root_span_and_no_link(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans

    async def handler(x: int) -> None:
        return None

    await ServiceBuilder().layer(TraceLayer(provider)).service(handler)(Task(1, attempts=1))
    [consumer] = exporter.get_finished_spans()
    assert consumer.parent is None
    assert list(consumer.links) == []


@pytest.mark.parametrize(
    "meta",
    [
        {"traceparent": 5},
        {"traceparent": "not-a-traceparent"},
        {"traceparent": None, "tracestate": ["x"]},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": 7},
        {"baggage": 3},
    ],
    ids=["int", "garbage", "none", "bad-tracestate", "int-baggage"],
)
async def test_a_malformed_trace_context_is_ignored(
    spans: tuple[TracerProvider, InMemorySpanExporter],
    meta: dict[str, object],
    autojump_clock: trio.abc.Clock,
) -> None:
    provider, exporter = spans
    ran: list[int] = []

    async def handler(x: int) -> int:
        ran.append(x)
        return x

    async with MemoryBackend.open() as backend:
        task_id = await backend.push(1, meta=meta)
        worker = WorkerBuilder("w").backend(backend).layer(TraceLayer(provider)).build(handler)
        with trio.fail_after(5):
            await worker.run(burst=True)
        task = await backend.get_task(task_id)
    assert task is not None and task.status.value == "done" and ran == [1]
    [consumer] = exporter.get_finished_spans()
    assert consumer.kind is SpanKind.CONSUMER
    assert consumer.attributes is not None
    assert consumer.attributes["trioqueue.outcome"] == "done"


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install trioqueue\[otel\]"):
        TraceLayer()
