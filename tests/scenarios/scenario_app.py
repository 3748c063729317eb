"""The handlers of the scenario deployments, copied into each deployment's folder as ``app.py``.

Every handler that completes appends ``<task id> <attempt> <pid>`` to the
deployment's ledger (one ``O_APPEND`` write, so lines of concurrent
processes never mix) and returns ``{"pid": ..., "attempt": ...}``: the
ledger is the side effect whose count the invariants check. Handlers that
"have a bug" (``Abort``) until the file ``fixed`` exists model a deploy that
fixes them.

The command line serves them as ``app:work``, ``app:tick``, ``app:flow``;
``serve_lib`` is a worker embedded in a program through the library.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import trio

from trioqueue import (
    Abort,
    Attempt,
    DagFlow,
    Monitor,
    Retention,
    TaskId,
    WorkerBuilder,
    open_backend,
)

HOME = pathlib.Path(os.environ.get("SCENARIO_HOME", "."))
LEDGER = HOME / "ledger"
FIXED = HOME / "fixed"

#: ``work`` args that hold the task until it is cancelled.
HOLD = -1
#: The nodes of ``flow``, by name.
NODES = ("split", "double", "check", "combine")
#: The interval of the ``tick`` schedule, in seconds.
TICK_EVERY = 1.0


def record(task_id: TaskId, attempt: Attempt) -> dict[str, int]:
    """Append this completed attempt to the ledger; return what the task's result holds."""
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task_id} {int(attempt)} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return {"pid": os.getpid(), "attempt": int(attempt)}


def buggy(n: int) -> bool:
    """Whether ``work`` (and the flow's ``check``) refuse ``n`` until the fix is deployed."""
    return n % 7 == 3


def flaky(n: int) -> bool:
    """Whether ``work`` fails the first attempt of ``n`` (retried after the backoff)."""
    return n % 5 == 1


def broken(n: int) -> bool:
    """Whether ``n`` is refused now."""
    return buggy(n) and not FIXED.exists()


async def work(n: int, task_id: TaskId, attempt: Attempt) -> dict[str, int]:
    if n == HOLD:
        await trio.sleep(60)  # cancelled from another process long before
    if broken(n):
        raise Abort(f"{n} is not fixed yet")
    if flaky(n) and attempt == 1:
        raise RuntimeError(f"{n} fails its first attempt")
    await trio.sleep(0.05 * (1 + n % 4))
    return record(task_id, attempt)


async def tick(args: dict[str, str], task_id: TaskId, attempt: Attempt) -> dict[str, int]:
    return record(task_id, attempt)


async def lib(n: int, task_id: TaskId, attempt: Attempt) -> dict[str, int]:
    return record(task_id, attempt)


async def split(n: int, task_id: TaskId, attempt: Attempt) -> int:
    record(task_id, attempt)
    return n


async def double(n: int, task_id: TaskId, attempt: Attempt) -> int:
    record(task_id, attempt)
    return 2 * n


async def check(n: int, task_id: TaskId, attempt: Attempt) -> int:
    if broken(n):
        raise Abort(f"check of {n} is not fixed yet")
    record(task_id, attempt)
    return n + 1


async def combine(parts: tuple[int, int], task_id: TaskId, attempt: Attempt) -> dict[str, int]:
    record(task_id, attempt)
    return {"double": parts[0], "check": parts[1]}


flow = DagFlow("scenario")
_split = flow.node(split)
_double = flow.node(double, depends_on=(_split,))
_check = flow.node(check, depends_on=(_split,))
flow.node(combine, depends_on=(_double, _check))
flow.validate()


def expected_run_result(n: int) -> dict[str, int]:
    """The result of a ``flow`` run pushed with ``n``."""
    return {"double": 2 * n, "check": n + 1}


def _serves(builder: WorkerBuilder, handler: Any) -> bool:
    """Whether ``builder`` builds the worker of ``handler``.

    ``builder.handler`` says it; where the builder does not have it, the
    command line's worker name (``app:tick@host:pid``) does.
    """
    spec = f"{__name__}:{handler.__name__}"
    served = getattr(builder, "handler", None)
    if served is not None:
        return served is handler or served == spec
    name = str(getattr(builder, "name", None) or builder._name)
    return name.partition("@")[0] == spec


def configure_worker(builder: WorkerBuilder) -> None:
    """Give the ``tick`` worker its schedule (the default name: every process shares it)."""
    if _serves(builder, tick):
        builder.every(TICK_EVERY, args={"kind": "tick"})


async def serve_lib(url: str) -> None:
    """Serve the ``app:lib`` queue from a program, with its own retention as the default.

    It prunes often (every 0.3 s on average) so that a scenario sees what it
    prunes within seconds; SIGTERM stops it gracefully.
    """
    async with open_backend(url, queue="app:lib", retention=Retention(interval=0.3)) as backend:
        worker = WorkerBuilder("lib").backend(backend).concurrency(4).lease(3).build(lib)
        await Monitor(shutdown_timeout=10).register(worker).run()
