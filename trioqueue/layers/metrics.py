"""Prometheus metrics of attempts: tasks by outcome, attempt durations, tasks in progress."""

from __future__ import annotations

import weakref
from bisect import bisect_left
from typing import Any

import trio

from .._boundary import own_deadline
from .._metrics_server import load_prometheus, registry_or_default
from .._outcome import DONE, LABELS, decide
from .._service import Service
from .._task import Task

__all__ = ["Metrics", "MetricsLayer"]

_OUTCOMES = LABELS


#: The duration histogram's upper bounds (prometheus-client's defaults; +Inf is implied).
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class _QueueStats:
    """Plain counters of one queue, bumped per attempt and read at scrape time."""

    __slots__ = ("buckets", "in_progress", "outcomes", "sum")

    def __init__(self) -> None:
        self.in_progress = 0
        self.outcomes = dict.fromkeys(_OUTCOMES, 0)
        self.buckets = [0] * (len(_BUCKETS) + 1)  # per bucket, not cumulative
        self.sum = 0.0


class _Family:
    """The task metrics of one registry: a collector over per-queue plain counters.

    Attempts only bump ints (no lock, no label lookup); prometheus-client
    turns them into samples when it scrapes.
    """

    def __init__(self, registry: Any) -> None:
        self.queues: dict[str | None, _QueueStats] = {}
        self._le = [repr(b) for b in _BUCKETS] + ["+Inf"]
        registry.register(self)

    def stats(self, queue: str | None) -> _QueueStats:
        s = self.queues.get(queue)
        if s is None:
            s = self.queues[queue] = _QueueStats()
        return s

    def _families(self) -> tuple[Any, Any, Any]:
        load_prometheus()
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        return (
            CounterMetricFamily(
                "trioqueue_attempts", "Attempts by outcome.", labels=["queue", "outcome"]
            ),
            HistogramMetricFamily(
                "trioqueue_attempt_duration_seconds", "Attempt duration.", labels=["queue"]
            ),
            GaugeMetricFamily(
                "trioqueue_tasks_in_progress", "Attempts running now.", labels=["queue"]
            ),
        )

    def describe(self) -> Any:
        """Yield the families without samples (for the registry's name check)."""
        yield from self._families()

    def collect(self) -> Any:
        """Yield the families with one sample set per queue seen."""
        total, duration, in_progress = self._families()
        for queue, s in list(self.queues.items()):
            q = "" if queue is None else queue
            for outcome, n in list(s.outcomes.items()):
                total.add_metric([q, outcome], n)
            cumulative, acc = [], 0
            for le, n in zip(self._le, list(s.buckets), strict=True):
                acc += n
                cumulative.append((le, acc))
            duration.add_metric([q], cumulative, s.sum)
            in_progress.add_metric([q], s.in_progress)
        yield total
        yield duration
        yield in_progress


_families: weakref.WeakKeyDictionary[Any, _Family] = weakref.WeakKeyDictionary()


class MetricsLayer:
    """Counts attempts by outcome, times them and gauges those in progress, per queue.

    Metrics (one set per registry, shared by every layer using it):
    ``trioqueue_attempts_total{queue,outcome}`` (outcomes as ``LogLayer`` names
    them), ``trioqueue_attempt_duration_seconds{queue}`` (a histogram, Trio
    clock) and ``trioqueue_tasks_in_progress{queue}``. Needs the ``metrics``
    extra (prometheus-client).

    Example::

        worker = WorkerBuilder("mail").backend(b).layer(MetricsLayer()).build(send)
        trioqueue.serve_metrics(9100)  # http://localhost:9100/metrics

    Args:
      registry: A ``prometheus_client.CollectorRegistry`` (default: the global one).

    Raises:
      ImportError: if prometheus-client is not installed.
    """

    def __init__(self, *, registry: Any = None) -> None:
        self.registry = registry_or_default(registry)
        family = _families.get(self.registry)
        if family is None:
            family = _families[self.registry] = _Family(self.registry)
        self._family = family

    def layer(self, inner: Service[Any, Any]) -> Metrics:
        """Return a ``Metrics`` service around ``inner``."""
        return Metrics(inner, self._family)

    def __repr__(self) -> str:
        return "MetricsLayer()"


class Metrics:
    """The service made by ``MetricsLayer``: records each attempt of ``inner``."""

    __slots__ = ("family", "inner")

    def __init__(self, inner: Service[Any, Any], family: _Family) -> None:
        self.inner = inner
        self.family = family

    async def __call__(self, task: Task[Any]) -> Any:
        """Run ``inner``, counting and timing the attempt."""
        s = self.family.queues.get(task.queue) or self.family.stats(task.queue)
        s.in_progress += 1
        start = trio.current_time()
        try:
            result = await self.inner(task)
        except BaseException as exc:
            s.outcomes[
                decide(task.attempts, task.max_attempts, exc, timed_out=own_deadline(exc)).label
            ] += 1
            raise
        finally:
            s.in_progress -= 1
            elapsed = trio.current_time() - start
            s.sum += elapsed
            s.buckets[bisect_left(_BUCKETS, elapsed)] += 1
        s.outcomes[DONE] += 1
        return result
