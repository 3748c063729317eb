"""The commands of the ``trioqueue`` command line, one coroutine each."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

import msgspec
import trio

from ._backend import Backend
from ._builder import WorkerBuilder
from ._cli_progress import Progress, ProgressLogHandler
from ._cli_support import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    args_type_of,
    backend_options,
    dumps,
    iso,
    leaf,
    load_handler,
    make_codec,
    one_line,
    open_backend_of,
    redact,
    short,
    table,
    task_dict,
    type_name,
)
from ._context import EventKind, WorkerEvent
from ._errors import CodecError, HandlerError
from ._metrics_server import collect_queue_depth, serve_metrics
from ._monitor import Monitor
from ._task import Status, Task
from .layers.metrics import MetricsLayer

__all__ = [
    "cmd_cancel",
    "cmd_migrate",
    "cmd_purge",
    "cmd_push",
    "cmd_retry",
    "cmd_show",
    "cmd_status",
    "cmd_tasks",
    "cmd_worker",
]

log = logging.getLogger("trioqueue.cli")


async def cmd_status(args: argparse.Namespace) -> int:
    """Print task counts per queue and status."""
    async with open_backend_of(args) as backend:
        counts = await backend.counts(queue=args.queue)
    if args.json:
        print(dumps({q: {s.value: c.get(s, 0) for s in Status} for q, c in sorted(counts.items())}))
        return EXIT_OK
    header = ["queue", *(s.value for s in Status), "total"]
    rows = []
    for q, by in sorted(counts.items()):
        cells = [str(by.get(s, 0)) for s in Status]
        rows.append([q, *cells, str(sum(by.values()))])
    if not rows:
        print("no tasks" + (f" in queue {args.queue!r}" if args.queue else ""))
        return EXIT_OK
    print(table(header, rows))
    return EXIT_OK


async def cmd_tasks(args: argparse.Namespace) -> int:
    """Print a page of tasks, newest first."""
    async with open_backend_of(args) as backend:
        tasks = await backend.list_tasks(
            queue=args.queue, status=args.status, limit=args.limit, offset=args.offset
        )
    if args.json:
        print(dumps([task_dict(t) for t in tasks]))
        return EXIT_OK
    if not tasks:
        print("no tasks")
        return EXIT_OK
    rows = [
        [
            str(t.id),
            t.queue or "",
            t.status.value,
            f"{t.attempts}/{t.max_attempts}",
            iso(t.run_at) or "",
            short(t.last_error, 50),
        ]
        for t in tasks
    ]
    print(table(["id", "queue", "status", "attempts", "run_at", "last_error"], rows))
    return EXIT_OK


async def _get(backend: Backend, task_id: str) -> Task[Any]:
    task = await backend.get_task(task_id)
    if task is None:
        raise CliError(EXIT_NOT_FOUND, f"no task with id {task_id!r}")
    return task


async def cmd_show(args: argparse.Namespace) -> int:
    """Print one task."""
    async with open_backend_of(args) as backend:
        task = await _get(backend, args.id)
    d = task_dict(task)
    if args.json:
        print(dumps(d))
        return EXIT_OK
    width = max(len(k) for k in d)
    for key, value in d.items():
        if key in ("args", "result", "meta"):
            value = dumps(value)
        print(f"{key.ljust(width)}  {'' if value is None else value}")
    return EXIT_OK


async def cmd_retry(args: argparse.Namespace) -> int:
    """Make a failed or killed task run again now."""
    async with open_backend_of(args) as backend:
        if not await backend.retry_task(args.id):
            task = await _get(backend, args.id)
            raise CliError(
                EXIT_FAILED,
                f"task {args.id} is {task.status.value}: only failed or killed tasks can be "
                f"retried",
            )
    print(f"retried {args.id}")
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a pending or failed task."""
    async with open_backend_of(args) as backend:
        if not await backend.cancel_task(args.id):
            task = await _get(backend, args.id)
            raise CliError(
                EXIT_FAILED,
                f"task {args.id} is {task.status.value}: only pending or failed tasks can be "
                f"cancelled",
            )
    print(f"cancelled {args.id}")
    return EXIT_OK


async def cmd_purge(args: argparse.Namespace) -> int:
    """Delete finished tasks older than a duration."""
    async with open_backend_of(args) as backend:
        n = await backend.purge(older_than=args.older_than)
    print(f"purged {n} task{'' if n == 1 else 's'}")
    return EXIT_OK


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the storage schema and print its version."""
    url: str = args.backend
    backend_options(args)
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        print("memory backend: nothing to migrate")
        return EXIT_OK
    if scheme == "sqlite":
        from .backends.sqlite import SCHEMA_VERSION

        async with open_backend_of(args):
            pass
        print(f"sqlite schema up to date at version {SCHEMA_VERSION}")
        return EXIT_OK
    try:
        from .backends import postgres
    except ImportError as exc:
        raise CliError(
            EXIT_BACKEND, f"cannot use backend {redact(url)!r}: {one_line(exc)}"
        ) from exc
    try:
        version = await postgres.migrate(url, **backend_options(args))
    except Exception as exc:
        raise CliError(
            EXIT_BACKEND, f"cannot migrate {redact(url)!r}: {one_line(leaf(exc))}"
        ) from exc
    print(f"postgresql schema up to date at version {version}")
    return EXIT_OK


async def cmd_push(args: argparse.Namespace) -> int:
    """Validate args against the handler's type and push one task."""
    handler = load_handler(args.handler)
    args_type = args_type_of(handler, args.handler)
    try:
        value = msgspec.json.decode(args.args.encode())
    except msgspec.DecodeError as exc:
        raise CliError(EXIT_USAGE, f"ARGS_JSON is not valid JSON: {exc}") from exc
    codec = make_codec(args.codec)
    try:
        codec.decoder(args_type)(codec.encode(value))
    except CodecError as exc:
        raise CliError(
            EXIT_USAGE, f"args do not fit {args.handler} ({type_name(args_type)}): {exc}"
        ) from exc
    async with open_backend_of(args, queue=args.queue) as backend:
        try:
            task_id = await backend.push(
                value,
                delay=args.delay,
                priority=args.priority,
                max_attempts=args.max_attempts,
                id=args.id,
            )
        except (TypeError, ValueError, CodecError) as exc:
            raise CliError(EXIT_USAGE, f"cannot push: {exc}") from exc
    print(task_id)
    return EXIT_OK


def _metrics(port: int) -> None:
    """Start the metrics HTTP server."""
    try:
        serve_metrics(port)
    except ImportError as exc:
        raise CliError(EXIT_USAGE, f"--metrics-port is not available: {exc}") from exc
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot serve metrics on port {port}: {exc}") from exc


async def cmd_worker(args: argparse.Namespace) -> int:
    """Run a worker until stopped by a signal (or, with --burst, until idle)."""
    handler = load_handler(args.handler)
    args_type_of(handler, args.handler)
    metrics = args.metrics_port is not None
    if metrics:
        _metrics(args.metrics_port)
    live = args.progress if args.progress is not None else args.burst and sys.stderr.isatty()
    name = f"{args.handler}@{socket.gethostname()}:{os.getpid()}"
    monitor = Monitor(shutdown_timeout=args.shutdown_timeout)

    def stop_when_idle(event: WorkerEvent) -> None:
        if event.kind is EventKind.IDLE:
            monitor.stop()

    async with open_backend_of(args, queue=args.queue) as backend:
        builder = WorkerBuilder(name).backend(backend).concurrency(args.concurrency)
        builder.shutdown_timeout(args.shutdown_timeout)
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
            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.run)
                if metrics:
                    await nursery.start(collect_queue_depth, backend)
                await monitor.run()
                nursery.cancel_scope.cancel()
        finally:
            progress.finish()
    return EXIT_INTERRUPTED if monitor.signals_received > 1 else EXIT_OK
