"""Prometheus exposition beside the middleware: queue depth read from storage, and ``/metrics``.

``MetricsLayer`` (in ``trioqueue.layers``) counts attempts as they run; what
is here does not wrap a service: ``collect_queue_depth`` polls a backend's
counts in a Trio task, and ``serve_metrics`` serves a registry over HTTP.
prometheus-client is imported on first use, so it stays an optional extra.
"""

from __future__ import annotations

from typing import Any

import trio

from ._backend import Backend
from ._durations import seconds
from ._errors import BackendError
from ._task import Status

__all__ = [
    "QueueDepthCollector",
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


class QueueDepthCollector:
    """A Prometheus collector of ``trioqueue_queue_depth{queue,status}``, refreshed by ``update``.

    Prometheus scrapes from its own thread, which cannot await storage, so
    the collector serves the counts of its last ``update(backend)``;
    ``collect_queue_depth`` runs the updates on a schedule.

    Example::

        depth = QueueDepthCollector(registry=registry)
        await depth.update(backend)

    Args:
      registry: Where to register (default: the global registry; ``False`` for none).
    """

    def __init__(self, *, registry: Any = None) -> None:
        self._counts: dict[str, dict[Status, int]] = {}
        if registry is not False:
            registry_or_default(registry).register(self)

    async def update(self, backend: Backend) -> None:
        """Read ``backend.counts()`` (every queue) for the next scrapes.

        Raises:
          BackendError: if storage failed after retries.
        """
        self._counts = await backend.counts()

    def collect(self) -> Any:
        """Yield the gauge family (called by prometheus-client on a scrape)."""
        load_prometheus()
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "trioqueue_queue_depth", "Tasks per queue and status.", labels=["queue", "status"]
        )
        for queue, by_status in sorted(self._counts.items()):
            for status in Status:
                family.add_metric([queue, status.value], by_status.get(status, 0))
        yield family


async def collect_queue_depth(
    backend: Backend,
    *,
    registry: Any = None,
    interval: float = 15.0,
    task_status: trio.TaskStatus[QueueDepthCollector] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep ``trioqueue_queue_depth`` up to date from ``backend.counts()`` until cancelled.

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
