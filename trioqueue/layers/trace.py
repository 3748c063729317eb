"""OpenTelemetry tracing: a PRODUCER span at push, a CONSUMER span per attempt."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .._boundary import own_deadline
from .._outcome import DONE, decide
from .._service import Service
from .._sink import TaskSink
from .._task import Task, TaskId

__all__ = ["Trace", "TraceLayer", "inject_trace_context", "traced_push"]

log = logging.getLogger("trioqueue.layers.trace")

_SYSTEM = "trioqueue"
_SCOPE = "trioqueue"


def _otel() -> Any:
    try:
        from opentelemetry import propagate, trace
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "trioqueue's tracing needs OpenTelemetry: pip install trioqueue[otel]"
        ) from exc
    return trace, propagate


def inject_trace_context(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return ``meta`` (or a new dict) with the current trace context put in it.

    The global propagator writes the headers (W3C ``traceparent`` and
    ``tracestate`` by default) as keys of ``meta``.
    """
    _, propagate = _otel()
    carrier: dict[str, Any] = {} if meta is None else dict(meta)
    propagate.inject(carrier)
    return carrier


async def traced_push(
    sink: TaskSink[Any], args: Any, *, tracer_provider: Any = None, **push_kwargs: Any
) -> TaskId:
    """Push ``args`` under a PRODUCER span ``send <queue>`` whose context travels in ``meta``.

    Example::

        task_id = await traced_push(backend, {"to": "a@example.com"}, priority=5)

    Args:
      sink: The sink (a backend) to push to.
      args: The task's arguments.
      tracer_provider: The OpenTelemetry tracer provider (default: the global one).
      **push_kwargs: Passed to ``sink.push`` (``meta`` is kept and added to).

    Returns:
      The task's id (generated here when ``id`` is not given, so the span can name it).

    Raises:
      As ``sink.push`` does; the span records the error.
    """
    trace, propagate = _otel()
    tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)
    queue = getattr(sink, "queue", None) or "default"
    task_id = push_kwargs.pop("id", None) or TaskId.new()
    attributes = {
        "messaging.system": _SYSTEM,
        "messaging.destination.name": queue,
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.message.id": str(task_id),
    }
    with tracer.start_as_current_span(
        f"send {queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ):
        meta = dict(push_kwargs.pop("meta", None) or {})
        propagate.inject(meta)
        result: TaskId = await sink.push(args, id=task_id, meta=meta, **push_kwargs)
        return result


def _extract(propagate: Any, meta: Mapping[str, Any]) -> Any:
    """Return the trace context carried in ``meta``, or None if it cannot be read.

    ``meta`` comes from whoever pushed the task: a header that is not a
    string, or that a propagator chokes on, leaves the span without a
    producer parent instead of failing the task.
    """
    carrier = {k: v for k, v in meta.items() if isinstance(v, str)}
    try:
        return propagate.extract(carrier)
    except Exception:
        log.debug("unreadable trace context in meta: %r", carrier, exc_info=True)
        return None


class TraceLayer:
    """Wraps each attempt in a CONSUMER span ``process <queue>``, in the producer's trace.

    The span's parent is the context ``traced_push`` (or
    ``inject_trace_context``) put in the task's ``meta``, so a task's send
    span and all its attempts form one trace; the span also carries a link to
    that context, as the messaging conventions ask of consumers. A task
    pushed without a context gets a span parented to whatever is current, and
    so does one whose context in ``meta`` cannot be read (a malformed or
    non-string ``traceparent``): the task runs either way.
    Attributes follow the OpenTelemetry messaging conventions
    (``messaging.system="trioqueue"``, ``messaging.destination.name``,
    ``messaging.message.id``, ``messaging.operation.name="process"``), plus
    ``trioqueue.attempt`` and ``trioqueue.outcome``. Needs the ``otel`` extra.

    Example::

        worker = WorkerBuilder("mail").backend(b).layer(TraceLayer()).build(send)

    Args:
      tracer_provider: The tracer provider (default: the global one).

    Raises:
      ImportError: if OpenTelemetry is not installed.
    """

    def __init__(self, tracer_provider: Any = None) -> None:
        trace, _ = _otel()
        self.tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider)

    def layer(self, inner: Service[Any, Any]) -> Trace:
        """Return a ``Trace`` service around ``inner``."""
        return Trace(inner, self.tracer)

    def __repr__(self) -> str:
        return "TraceLayer()"


class Trace:
    """The service made by ``TraceLayer``: runs ``inner`` inside a CONSUMER span."""

    __slots__ = ("inner", "tracer")

    def __init__(self, inner: Service[Any, Any], tracer: Any) -> None:
        self.inner = inner
        self.tracer = tracer

    async def __call__(self, task: Task[Any]) -> Any:
        """Run ``inner`` in a span parented to (and linked to) the task's producer context."""
        trace, propagate = _otel()
        parent = _extract(propagate, task.meta)
        producer = (
            trace.INVALID_SPAN_CONTEXT
            if parent is None
            else trace.get_current_span(parent).get_span_context()
        )
        links = [trace.Link(producer)] if producer.is_valid else []
        queue = task.queue or "default"
        attributes = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": queue,
            "messaging.operation.name": "process",
            "messaging.operation.type": "process",
            "messaging.message.id": str(task.id),
            "trioqueue.attempt": task.attempts,
        }
        with self.tracer.start_as_current_span(
            f"process {queue}",
            context=parent if producer.is_valid else None,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        ) as span:
            try:
                result = await self.inner(task)
            except BaseException as exc:
                label = decide(
                    task.attempts, task.max_attempts, exc, timed_out=own_deadline(exc)
                ).label
                span.set_attribute("trioqueue.outcome", label)
                raise
            span.set_attribute("trioqueue.outcome", DONE)
            return result
