"""The worker process of the crash test: ``python -m trioqueue.testing._crash_worker``.

Its handler appends ``"<task id> <pid> <attempt>"`` to the ledger file (one
write, then fsync) before it sleeps a random little while and returns. The
attempt is the worker's view of its lease: the claim that gave it the task. SIGTERM
stops it gracefully (a ``Monitor``); the crash test SIGKILLs it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import random
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from functools import partial
from typing import Any

import trio

from .._backend import Backend
from .._builder import WorkerBuilder
from .._monitor import Monitor
from .._open import open_backend
from .._task import Attempt, TaskId
from ._crash_flows import CRASH_FLOW, Ledger, flow_queue

log = logging.getLogger("trioqueue.testing.crash")

Opener = Callable[..., AbstractAsyncContextManager[Backend]]


def load_opener(spec: str) -> Opener:
    """Import ``"module:function"`` and return the function.

    Raises:
      ValueError: if ``spec`` has no ``:``.
      ImportError, AttributeError: if it cannot be found.
    """
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"an opener is 'module:function', got {spec!r}")
    fn: Opener = getattr(importlib.import_module(module), name)
    return fn


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trioqueue.testing._crash_worker")
    p.add_argument("--url", required=True)
    p.add_argument("--opener", default=None)
    p.add_argument("--queue", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--lease", type=float, default=1.5)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--sleep-max", type=float, default=0.05)
    p.add_argument("--burst", action="store_true")
    p.add_argument("--ready-dir", default=None)
    p.add_argument("--flows", action="store_true", help="also serve the workflow queue")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    opener: Opener = load_opener(args.opener) if args.opener else open_backend
    pid = os.getpid()
    fd = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sleep_max = float(args.sleep_max)

    async def handler(payload: Any, task_id: TaskId, attempt: Attempt) -> str:
        os.write(fd, f"{task_id} {pid} {attempt}\n".encode())
        os.fsync(fd)
        await trio.sleep(random.uniform(0.0, sleep_max))
        return "ok"

    def builder(name: str, backend: Backend) -> WorkerBuilder:
        return (
            WorkerBuilder(name)
            .backend(backend)
            .concurrency(args.concurrency)
            .lease(args.lease)
            .poll_interval(min(0.2, args.lease / 4))
            .shutdown_timeout(10.0)
        )

    try:
        async with AsyncExitStack() as stack:
            backend = await stack.enter_async_context(opener(args.url, queue=args.queue))
            workers = [builder(f"crash-{pid}", backend).build(handler)]
            if args.flows:  # the workflow runs' nodes, on a queue of their own
                queue = flow_queue(args.queue)
                flows = await stack.enter_async_context(opener(args.url, queue=queue))
                ledger = Ledger(fd, pid, sleep_max)
                workers.append(builder(f"flows-{pid}", flows).data(ledger).build(CRASH_FLOW))
            if args.burst:
                async with trio.open_nursery() as nursery:
                    for w in workers:
                        nursery.start_soon(partial(w.run, burst=True))
            else:
                monitor = Monitor()
                for w in workers:
                    monitor.register(w)
                async with trio.open_nursery() as nursery:
                    await nursery.start(monitor.run)
                    if args.ready_dir:  # an empty marker: signals are handled from now on
                        with open(os.path.join(args.ready_dir, f"ready.{pid}"), "w"):  # noqa: ASYNC230
                            pass
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one crash-test worker until it is stopped (or, with ``--burst``, drained)."""
    logging.basicConfig(level=logging.WARNING, format="%(process)d %(name)s: %(message)s")
    trio.run(_serve, _parse(argv))


if __name__ == "__main__":
    main()
