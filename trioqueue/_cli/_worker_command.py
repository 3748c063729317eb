"""``trioqueue worker``: run a worker until a signal (or, with ``--burst``, until idle)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._builder import WorkerBuilder
from .._context import EventKind, WorkerEvent
from .._errors import HandlerError
from .._metrics_server import collect_queue_depth, serve_metrics
from .._monitor import Monitor
from .._nursery import open_nursery
from ..layers.metrics import MetricsLayer
from ._backends import open_backend_of, start_wait
from ._errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError
from ._handlers import args_type, load_handler
from ._output import redact
from ._progress import Progress, ProgressLogHandler

__all__ = ["cmd_worker"]

log = logging.getLogger("trioqueue.cli")


@asynccontextmanager
async def _metrics_endpoint(port: int | None, host: str) -> AsyncIterator[None]:
    """Serve the global registry at ``/metrics`` on ``host:port`` (if given) for the block.

    The HTTP server is prometheus-client's, in its own thread; it is shut
    down when the block ends (which waits up to its poll interval, 0.5 s).

    Raises:
      CliError: (usage) without prometheus-client, or if the port cannot be bound.
    """
    if port is None:
        yield
        return
    try:
        server, thread = serve_metrics(port, addr=host)
    except ImportError as exc:
        raise CliError(EXIT_USAGE, f"--metrics-port is not available: {exc}") from exc
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot serve metrics on {host} port {port}: {exc}") from exc
    try:
        yield
    finally:

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop)


class _Outside:
    """The signals that reach the worker command while its ``Monitor`` does not handle them.

    Before the monitor runs, a signal interrupts the start (exit 130). After
    it returned, while the backend closes and the process exits, a signal is
    counted with the monitor's: a second signal still means exit 130.
    """

    def __init__(self) -> None:
        self.body = trio.CancelScope()
        self.stopped = False
        self.interrupted = False
        self.late = 0

    async def watch(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.stopped:
                self.late += 1
                log.warning("received %s while exiting", name)
            else:
                self.interrupted = True
                log.warning("received %s before the worker started: exiting", name)
                self.body.cancel()


async def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker until stopped by a signal (or, with --burst, until idle)."""
    handler = load_handler(args.handler)
    args_type(handler, args.handler)
    monitor = Monitor(shutdown_timeout=args.shutdown_timeout)
    outside = _Outside()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_nursery() as nursery:
            nursery.start_soon(outside.watch, signals)
            with outside.body:
                await _serve(args, handler, monitor, outside)
            nursery.cancel_scope.cancel()
    if outside.interrupted or monitor.signals_received + outside.late > 1:
        return EXIT_INTERRUPTED
    return EXIT_OK


async def _serve(
    args: argparse.Namespace, handler: Any, monitor: Monitor, outside: _Outside
) -> None:
    metrics = args.metrics_port is not None
    live = args.progress if args.progress is not None else args.burst and sys.stderr.isatty()
    name = f"{args.handler}@{socket.gethostname()}:{os.getpid()}"

    def stop_when_idle(event: WorkerEvent) -> None:
        if event.kind is EventKind.IDLE:
            monitor.stop()

    async with _metrics_endpoint(args.metrics_port, args.metrics_host):
        async with open_backend_of(args, queue=args.queue) as backend:
            builder = WorkerBuilder(name).backend(backend).concurrency(args.concurrency)
            builder.shutdown_timeout(args.shutdown_timeout)
            if args.burst:
                # A burst run must end: storage that keeps failing stops it.
                builder.storage_patience(start_wait(args))
            if metrics:
                builder.layer(MetricsLayer())
            if args.burst:
                builder.on_event(stop_when_idle)
            try:
                worker = builder.build(handler)
            except HandlerError as exc:
                raise CliError(EXIT_USAGE, f"{args.handler} is not a handler: {exc}") from exc
            monitor.register(worker)
            progress = Progress(worker, stream=sys.stderr, live=live)
            for h in logging.getLogger().handlers:
                if isinstance(h, ProgressLogHandler):
                    h.progress = progress
            log.info("worker %s on %s queue %r", name, redact(args.backend), backend.queue)
            try:
                async with open_nursery() as nursery:
                    nursery.start_soon(progress.run)
                    if metrics:
                        await nursery.start(collect_queue_depth, backend)
                    try:
                        await monitor.run()
                    finally:
                        outside.stopped = True
                    nursery.cancel_scope.cancel()
            finally:
                progress.finish()
