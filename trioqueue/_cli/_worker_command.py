"""``trioqueue worker``: run a worker until a signal (or, with ``--burst``, until idle)."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import FrameType
from typing import NoReturn

import trio

from .._backend import Backend
from .._builder import WorkerBuilder
from .._context import EventKind, WorkerEvent
from .._errors import HandlerError
from .._metrics_server import WorkerInfoCollector, serve_metrics
from .._monitor import Monitor
from .._nursery import open_nursery
from .._worker import Worker
from ._backends import install_hint, open_backend_of, start_wait
from ._errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, one_line
from ._handlers import Target, load_targets
from ._logs import BANNER, TaskLog
from ._output import redact
from ._progress import Progress, ProgressLogHandler

__all__ = ["cmd_worker", "exit_process"]

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
        raise CliError(
            EXIT_USAGE, f"--metrics-port is not available: {exc}{install_hint(exc)}"
        ) from exc
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
    counted with the monitor's: a second signal still means exit 130. Once
    the command's receiver closed, ``unheard`` (the process's handler from
    then to its exit) counts such a signal and ends the process with 130 at
    once if it is a second one, instead of leaving it to the default
    disposition (which ends the process by SIGTERM itself).
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.body = trio.CancelScope()
        self.stopped = False
        self.interrupted = False
        self.late = 0

    @property
    def interrupts(self) -> bool:
        """Whether the signals so far make the exit status 130."""
        return self.interrupted or self.monitor.signals_received + self.late > 1

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

    def unheard(self, signum: int, frame: FrameType | None) -> None:
        """Count a signal that came once no receiver listens; a second one exits 130."""
        self.late += 1
        if not self.interrupts:
            return  # a first signal once the worker stopped by itself: nothing to stop
        try:
            log.warning("received %s while exiting", signal.Signals(signum).name)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(EXIT_INTERRUPTED)


async def cmd_worker(args: argparse.Namespace) -> int:
    """Run workers until stopped by a signal (or, with --burst, until idle)."""
    targets = load_targets(args.handlers, args.queue)
    monitor = Monitor(shutdown_timeout=args.shutdown_timeout)
    outside = _Outside(monitor)
    # In place under the receivers, and once they close: from here to the
    # process's exit no signal meets its default disposition.
    for signum in _SIGNALS:
        signal.signal(signum, outside.unheard)
    with trio.open_signal_receiver(*_SIGNALS) as signals:
        async with open_nursery() as nursery:
            nursery.start_soon(outside.watch, signals)
            with outside.body:
                await _serve(args, targets, monitor, outside)
            nursery.cancel_scope.cancel()
    return EXIT_INTERRUPTED if outside.interrupts else EXIT_OK


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_process(code: int) -> NoReturn:
    """End the worker command's process with ``code``, its signal handler in place to the end.

    The interpreter's own exit puts SIGINT and SIGTERM back to their default
    dispositions before it tears the modules down, which takes a moment with
    a large program: a second signal then would end the process by the
    signal itself, not with status 130. So, as ``multiprocessing`` ends a
    child, the exit hooks run, the streams are flushed and the process ends
    at once. ``main`` calls this only for the process's own command line.
    """
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more can be said
                pass
        os._exit(code)


class _Budget:
    """Stops the monitor once ``--max-tasks`` tasks have finished (an event callback)."""

    def __init__(self, monitor: Monitor, limit: int | None) -> None:
        self.monitor = monitor
        self.left = limit

    def on_event(self, event: WorkerEvent) -> None:
        if self.left is None or event.kind not in _ENDS:
            return
        self.left -= 1
        if self.left == 0:
            log.warning("finished --max-tasks tasks: stopping")
            self.monitor.stop()


_ENDS = (EventKind.TASK_DONE, EventKind.TASK_FAILED, EventKind.TASK_KILLED)


def _layers(args: argparse.Namespace) -> list[object]:
    """The layers the flags ask for: --metrics-port and --otel."""
    layers: list[object] = []
    try:
        if args.metrics_port is not None:
            from ..layers.metrics import MetricsLayer

            layers.append(MetricsLayer())
        if args.otel:
            from ..layers.trace import TraceLayer

            layers.append(TraceLayer())
    except ImportError as exc:
        raise CliError(EXIT_USAGE, f"{one_line(exc)}{install_hint(exc)}") from exc
    return layers


def _build(
    args: argparse.Namespace,
    target: Target,
    backend: Backend,
    budget: _Budget,
    layers: list[object],
) -> Worker:
    name = f"{target.spec}@{socket.gethostname()}:{os.getpid()}"
    builder = WorkerBuilder(name, handler=target.handler)
    builder.backend(backend).concurrency(args.concurrency)
    builder.shutdown_timeout(args.shutdown_timeout)
    for name in ("lease", "prefetch", "timeout", "poll_interval"):
        value = getattr(args, name)
        if value is not None:
            getattr(builder, name)(value)
    if args.burst:  # a burst run must end: storage that keeps failing stops it
        builder.storage_patience(start_wait(args))
    tasklog = TaskLog(target.queue)
    builder.layer(tasklog).on_event(tasklog.on_event).on_event(budget.on_event)
    for layer in layers:
        builder.layer(layer)  # type: ignore[arg-type]
    if target.configure is not None:
        try:
            target.configure(builder)
        except Exception as exc:
            raise CliError(
                EXIT_USAGE, f"configure_worker of {target.spec} failed: {one_line(exc)}"
            ) from exc
    try:
        return builder.build(target.handler)
    except (HandlerError, ValueError) as exc:
        hint = ""
        if "Data[" in str(exc) and target.configure is None:
            hint = (
                "; define configure_worker(builder) in its module to add it with "
                "builder.data(...) (see docs/cli.md)"
            )
        raise CliError(EXIT_USAGE, f"{target.spec} is not a handler: {exc}{hint}") from exc


async def _ready(backends: list[Backend]) -> int | None:
    """Return the unfinished tasks of the workers' queues (the live line's total), or None."""
    total = 0
    try:
        for b in backends:
            counts = (await b.counts(queue=b.queue)).get(b.queue, {})
            total += sum(n for status, n in counts.items() if not status.is_final)
    except Exception as exc:  # the line goes without its total
        log.debug("cannot count the tasks to do: %s", exc)
        return None
    return total


def _banner(args: argparse.Namespace, workers: list[Worker], targets: list[Target]) -> None:
    from .. import __version__

    for worker, target in zip(workers, targets, strict=True):
        BANNER.info(
            "trioqueue %s worker %s (pid %d) on %s: queue %r, handler %s, concurrency %d%s",
            __version__,
            worker.name,
            os.getpid(),
            redact(args.backend),
            target.queue,
            target.spec,
            worker.concurrency,
            " (burst)" if args.burst else "",
            extra={
                "worker": worker.name,
                "pid": os.getpid(),
                "backend": redact(args.backend),
                "queue": target.queue,
                "handler": target.spec,
                "concurrency": worker.concurrency,
                "version": __version__,
            },
        )


async def _serve(
    args: argparse.Namespace, targets: list[Target], monitor: Monitor, outside: _Outside
) -> None:
    live = args.progress if args.progress is not None else args.burst and sys.stderr.isatty()
    budget = _Budget(monitor, args.max_tasks)
    layers = _layers(args)

    async with _metrics_endpoint(args.metrics_port, args.metrics_host), AsyncExitStack() as stack:
        workers: list[Worker] = []
        backends: list[Backend] = []
        for target in targets:
            backend = await stack.enter_async_context(open_backend_of(args, queue=target.queue))
            backends.append(backend)
            worker = _build(args, target, backend, budget, layers)
            monitor.register(worker)
            workers.append(worker)
        info = WorkerInfoCollector(workers) if args.metrics_port is not None else None
        total = await _ready(backends) if live and args.burst else None
        progress = Progress(workers, stream=sys.stderr, live=live, total=total)
        for h in logging.getLogger().handlers:
            if isinstance(h, ProgressLogHandler):
                h.progress = progress
        _banner(args, workers, targets)
        try:
            async with open_nursery() as nursery:
                nursery.start_soon(progress.run)
                try:
                    await monitor.run(burst=args.burst)
                finally:
                    outside.stopped = True
                nursery.cancel_scope.cancel()
        finally:
            progress.finish()
            if info is not None:
                info.close()
