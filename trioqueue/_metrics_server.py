"""Prometheus exposition beside the middleware: the store's queues, the workers, ``/metrics``.

``MetricsLayer`` (in ``trioqueue.layers``) counts attempts as they run; what
is here does not wrap a service: ``collect_queue_depth`` polls a backend's
counts in a Trio task (the store's metrics: run it in one process per store,
``trioqueue metrics``, so that no sum across processes counts a queue twice),
``WorkerInfoCollector`` says which workers are up, and ``serve_metrics``
serves a registry over HTTP. prometheus-client is imported on first use, so
it stays an optional extra.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ._backend import Backend
from ._durations import seconds
from ._errors import BackendError
from ._task import Status

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = [
    "DEPTH_INTERVAL",
    "QueueDepthCollector",
    "WorkerInfoCollector",
    "collect_queue_depth",
    "load_prometheus",
    "registry_or_default",
    "serve_metrics",
]


def load_prometheus() -> Any:
    """Return the ``prometheus_client`` module.

    Raises:
      ImportError: naming the ``metrics`` extra, if it is not installed.
    """
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "trioqueue's metrics need prometheus-client: pip install trioqueue[metrics]"
        ) from exc
    return prometheus_client


def registry_or_default(registry: Any) -> Any:
    """Return ``registry``, or prometheus-client's global registry for None."""
    return load_prometheus().REGISTRY if registry is None else registry


#: Seconds between two reads of the store's counts (``collect_queue_depth``).
DEPTH_INTERVAL = 5.0

#: The statuses of tasks still to finish: what a queue's depth counts.
UNFINISHED = tuple(s for s in Status if not s.is_final)


class QueueDepthCollector:
    """A Prometheus collector of the store's queues, refreshed by ``update``.

    ``trioqueue_queue_depth{queue,status}`` counts the unfinished tasks
    (pending, queued, running, failed: finished ones only grow until
    retention prunes them, so they are no depth); ``trioqueue_queue_oldest_ready_seconds{queue}``
    is how long the oldest task due to run has waited (0 when none waits),
    the figure to alert on when workers fall behind.

    Prometheus scrapes from its own thread, which cannot await storage, so
    the collector serves the figures of its last ``update(backend)``;
    ``collect_queue_depth`` runs the updates on a schedule. Every process
    that runs one reports the same store-wide figures: aggregate with
    ``max``, not ``sum``, or run one per store (``trioqueue metrics``).

    Example::

        depth = QueueDepthCollector(registry=registry)
        await depth.update(backend)

    Args:
      registry: Where to register (default: the global registry; ``False`` for none).
    """

    def __init__(self, *, registry: Any = None) -> None:
        self._counts: dict[str, dict[Status, int]] = {}
        self._oldest: dict[str, float] = {}
        if registry is not False:
            registry_or_default(registry).register(self)

    async def update(self, backend: Backend) -> None:
        """Read ``backend.counts()`` (every queue) and each queue's oldest ready task.

        Raises:
          BackendError: if storage failed after retries.
        """
        counts = await backend.counts()
        now = backend.driver.now()
        oldest: dict[str, float] = {}
        for queue, by_status in counts.items():
            due = None
            if by_status.get(Status.PENDING) or by_status.get(Status.FAILED):
                try:
                    due = await backend.driver.next_run_at(queue)
                except Exception as exc:  # one queue's age must not lose the counts
                    raise BackendError(f"cannot read queue {queue!r}'s oldest task") from exc
            oldest[queue] = 0.0 if due is None else max(0.0, now - due)
        self._counts, self._oldest = counts, oldest

    def collect(self) -> Any:
        """Yield the gauge family (called by prometheus-client on a scrape)."""
        load_prometheus()
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "trioqueue_queue_depth",
            "Unfinished tasks per queue and status.",
            labels=["queue", "status"],
        )
        age = GaugeMetricFamily(
            "trioqueue_queue_oldest_ready_seconds",
            "How long the oldest task due to run has waited.",
            labels=["queue"],
        )
        for queue, by_status in sorted(self._counts.items()):
            for status in UNFINISHED:
                family.add_metric([queue, status.value], by_status.get(status, 0))
            age.add_metric([queue], self._oldest.get(queue, 0.0))
        yield family
        yield age


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("trioqueue")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class WorkerInfoCollector:
    """A Prometheus collector of this process's workers: up, load and identity.

    ``trioqueue_worker_up{worker,queue,host,version}`` is 1 while the worker
    runs (alert on its absence), ``trioqueue_worker_running{worker}`` and
    ``trioqueue_worker_concurrency{worker}`` its load.

    Example::

        info = WorkerInfoCollector([worker], registry=registry)
        ...
        info.close()

    Args:
      workers: The workers to report.
      registry: Where to register (default: the global registry).
    """

    def __init__(self, workers: Sequence[Worker], *, registry: Any = None) -> None:
        self.workers = list(workers)
        self._registry = registry_or_default(registry)
        self._registry.register(self)

    def close(self) -> None:
        """Unregister: the workers are no longer reported."""
        self._registry.unregister(self)

    def collect(self) -> Any:
        """Yield the gauge families (called by prometheus-client on a scrape)."""
        load_prometheus()
        from prometheus_client.core import GaugeMetricFamily

        version = _version()
        up = GaugeMetricFamily(
            "trioqueue_worker_up",
            "1 for each running worker.",
            labels=["worker", "queue", "host", "pid", "version"],
        )
        running = GaugeMetricFamily(
            "trioqueue_worker_running", "Tasks the worker runs now.", labels=["worker"]
        )
        slots = GaugeMetricFamily(
            "trioqueue_worker_concurrency", "Tasks the worker may run at once.", labels=["worker"]
        )
        host, pid = socket.gethostname(), str(os.getpid())
        for w in self.workers:
            stats = w.statistics()
            up.add_metric([w.name, w.backend.queue, host, pid, version], 1)
            running.add_metric([w.name], stats.running)
            slots.add_metric([w.name], stats.concurrency)
        yield up
        yield running
        yield slots


async def collect_queue_depth(
    backend: Backend,
    *,
    registry: Any = None,
    interval: float = DEPTH_INTERVAL,
    task_status: trio.TaskStatus[QueueDepthCollector] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep the store's queue metrics (``QueueDepthCollector``) up to date until cancelled.

    Use as ``depth = await nursery.start(collect_queue_depth, backend)``; the
    first update has happened when it returns. A failed read is skipped (the
    last counts stay) and tried again next interval.

    Resource handling:
      The collector is registered for as long as this runs: it is
      unregistered when this returns, so the gauge never shows counts that
      nobody refreshes, and the next run may register again.

    Args:
      backend: The backend whose queues to count.
      registry: Where to register the collector (default: the global registry).
      interval: Seconds between updates.

    Raises:
      BackendError: if the first update fails (``nursery.start`` raises it).
    """
    interval = seconds("interval", interval, positive=True)
    target = registry_or_default(registry)
    collector = QueueDepthCollector(registry=target)
    try:
        await collector.update(backend)
        task_status.started(collector)
        while True:
            await trio.sleep(interval)
            try:
                await collector.update(backend)
            except BackendError:
                continue
    finally:
        target.unregister(collector)


def serve_metrics(port: int, registry: Any = None, *, addr: str = "127.0.0.1") -> Any:
    """Serve ``registry`` (default: the global one) over HTTP at ``/metrics`` on ``port``.

    The server runs in a daemon thread (prometheus-client's
    ``start_http_server``); this is what the CLI's ``--metrics-port`` calls.
    It listens on loopback unless ``addr`` says otherwise (``"0.0.0.0"``
    for every interface): the queue's metrics are not for the whole network.

    Returns:
      The ``(server, thread)`` pair; ``server.shutdown()`` stops it.

    Raises:
      ImportError: if prometheus-client is not installed.
      OSError: if the port cannot be bound.
    """
    return load_prometheus().start_http_server(
        port, addr=addr, registry=registry_or_default(registry)
    )
