"""The commands about queues, workers and the store as a whole.

pause, resume, paused, workers, healthcheck and metrics.

Each takes the parsed arguments and returns the exit status, as in ``_commands``.
"""

from __future__ import annotations

import argparse
import functools
import signal

import trio

from .._metrics_server import collect_queue_depth
from ._backends import open_backend_of, spec_of
from ._errors import EXIT_OK, EXIT_USAGE, CliError
from ._output import dumps, escape, iso, table, worker_dict

__all__ = [
    "cmd_healthcheck",
    "cmd_metrics",
    "cmd_pause",
    "cmd_paused",
    "cmd_resume",
    "cmd_workers",
]


def _queue(args: argparse.Namespace) -> str:
    queue: str = args.queue_name or "default"
    return queue


async def cmd_pause(args: argparse.Namespace) -> int:
    """Pause a queue: its workers stop claiming; tasks already running finish."""
    queue = _queue(args)
    async with open_backend_of(args) as backend:
        try:
            await backend.pause(queue)
        except ValueError as exc:
            raise CliError(EXIT_USAGE, f"cannot pause: {exc}") from exc
    print(f"paused queue {queue!r}")
    return EXIT_OK


async def cmd_resume(args: argparse.Namespace) -> int:
    """Resume a paused queue: its workers claim again at once."""
    queue = _queue(args)
    async with open_backend_of(args) as backend:
        try:
            await backend.resume(queue)
        except ValueError as exc:
            raise CliError(EXIT_USAGE, f"cannot resume: {exc}") from exc
    print(f"resumed queue {queue!r}")
    return EXIT_OK


async def cmd_paused(args: argparse.Namespace) -> int:
    """Print the paused queues, one a line."""
    async with open_backend_of(args, read_only=True) as backend:
        queues = await backend.paused()
    if args.json:
        print(dumps(queues))
    elif not queues:
        print("no paused queues")
    else:
        print("\n".join(escape(q) for q in queues))
    return EXIT_OK


async def cmd_workers(args: argparse.Namespace) -> int:
    """Print the live workers of the store: name, queue, running/concurrency, times."""
    async with open_backend_of(args, read_only=True) as backend:
        workers = await backend.workers(stale_after=args.stale_after)
    if args.queue is not None:
        workers = [w for w in workers if w.queue == args.queue]
    if args.json:
        print(dumps([worker_dict(w) for w in workers]))
        return EXIT_OK
    if not workers:
        print("no workers" + (f" on queue {args.queue!r}" if args.queue else ""))
        return EXIT_OK
    rows = [
        [
            w.name,
            w.queue,
            f"{w.running}/{w.concurrency}",
            iso(w.started_at) or "",
            iso(w.last_seen) or "",
        ]
        for w in workers
    ]
    print(table(["name", "queue", "running", "started", "last_seen"], rows))
    return EXIT_OK


async def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 if the backend answers a query and its schema is this code's; write nothing."""
    spec = spec_of(args.backend)
    async with open_backend_of(args, read_only=True) as backend:
        counts = await backend.counts()
    version = "" if spec.schema_version is None else f", schema version {spec.schema_version}"
    queues = len(counts)
    print(f"ok: {spec.name}{version}, {queues} queue{'' if queues == 1 else 's'}")
    return EXIT_OK


async def cmd_metrics(args: argparse.Namespace) -> int:
    """Serve the store's queue metrics over HTTP until interrupted."""
    from ._worker_command import _metrics_endpoint

    if args.port is None:
        raise CliError(EXIT_USAGE, "metrics needs --port (or TRIOQUEUE_PORT)")
    collect = functools.partial(collect_queue_depth, interval=args.interval)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            _metrics_endpoint(args.port, args.host),
            open_backend_of(args, read_only=True) as backend,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(collect, backend)
            url = f"http://{args.host}:{args.port}/metrics"
            print(f"serving the store's metrics on {url}", flush=True)
            async for _ in signals:  # SIGINT or SIGTERM: a clean exit
                break
            nursery.cancel_scope.cancel()
    return EXIT_OK
