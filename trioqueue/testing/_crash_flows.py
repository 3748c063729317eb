"""Workflows in the crash test: a DAG whose nodes write the ledger, and its checks.

Each run of ``CRASH_FLOW`` (args ``n``) has a root, two branches, a ``map``
over three items gathered by a node of its own, and a join of three inputs;
every node appends ``"<task id> <pid> <attempt>"`` to the ledger as the plain
crash handler does, sleeps a random little while, and returns a value that
follows from ``n``. So after the drain, the run's result proves that the join
got its complete inputs, in order, and storage shows whether every node is
DONE once and nothing more was created.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import trio

from .._backend import Backend
from .._flow._define import DagFlow
from .._flow._records import node_id
from .._handler import Data
from .._task import Attempt, Status, TaskId

__all__ = ["CRASH_FLOW", "Ledger", "check_runs", "expected_nodes", "flow_queue", "push_runs"]


@dataclass
class Ledger:
    """Where the nodes of a crash-test worker write: the ledger's descriptor, the pid."""

    fd: int
    pid: int
    sleep_max: float

    async def write(self, task_id: str, attempt: int) -> None:
        os.write(self.fd, f"{task_id} {self.pid} {attempt}\n".encode())
        os.fsync(self.fd)
        await trio.sleep(random.uniform(0.0, self.sleep_max))


async def root(n: int, ledger: Data[Ledger], task_id: TaskId, attempt: Attempt) -> int:
    await ledger.write(task_id, attempt)
    return n


async def double(n: int, ledger: Data[Ledger], task_id: TaskId, attempt: Attempt) -> int:
    await ledger.write(task_id, attempt)
    return 2 * n


async def triple(n: int, ledger: Data[Ledger], task_id: TaskId, attempt: Attempt) -> int:
    await ledger.write(task_id, attempt)
    return 3 * n


async def spread(n: int, ledger: Data[Ledger], task_id: TaskId, attempt: Attempt) -> list[int]:
    await ledger.write(task_id, attempt)
    return [n, n + 1, n + 2]


async def square(i: int, ledger: Data[Ledger], task_id: TaskId, attempt: Attempt) -> int:
    await ledger.write(task_id, attempt)
    return i * i


async def gather(xs: list[int], ledger: Data[Ledger], task_id: TaskId, attempt: Attempt) -> int:
    await ledger.write(task_id, attempt)
    return sum(xs)


async def join(
    args: tuple[int, int, int], ledger: Data[Ledger], task_id: TaskId, attempt: Attempt
) -> list[int]:
    await ledger.write(task_id, attempt)
    return list(args)


def _flow() -> DagFlow:
    dag = DagFlow("crash")
    r = dag.node(root)
    a = dag.node(double, depends_on=(r,))
    b = dag.node(triple, depends_on=(r,))
    s = dag.node(spread, depends_on=(r,))
    m = dag.map(square, depends_on=s)
    g = dag.node(gather, depends_on=(m,))
    dag.node(join, depends_on=(a, b, g))
    return dag


#: The flow every crash-test worker serves on ``flow_queue(queue)``.
CRASH_FLOW = _flow()


def flow_queue(queue: str) -> str:
    """Return the queue of the crash test's workflow runs beside ``queue``."""
    return f"{queue}-flows"


def expected_nodes(run: str) -> list[str]:
    """Return the ids of every node task of a run."""
    names = ["root", "double", "triple", "spread", "gather", "join"]
    return [node_id(run, n) for n in names] + [node_id(run, "square", i) for i in range(3)]


def _result(n: int) -> list[int]:
    return [2 * n, 3 * n, n * n + (n + 1) ** 2 + (n + 2) ** 2]


async def push_runs(backend: Backend, count: int) -> list[str]:
    """Start ``count`` runs (args 0, 1, ...) with attempts enough for every kill."""
    return [
        str(await CRASH_FLOW.push(backend, n, id=f"run-{n}", max_attempts=10_000))
        for n in range(count)
    ]


async def check_runs(backend: Backend, runs: list[str]) -> list[str]:
    """Return one line per broken promise of the runs: every node DONE once, results whole."""
    problems = []
    driver = backend.driver
    for n, run in enumerate(runs):
        rec = await driver.get(run)
        if rec is None or rec.status is not Status.DONE:
            state = "lost" if rec is None else f"{rec.status.value} ({rec.last_error})"
            problems.append(f"workflow run {run} ended {state}, not done")
            continue
        got = await backend.wait_result(run)
        if got != _result(n):
            problems.append(f"workflow run {run} gave {got}, not {_result(n)}: a join's inputs")
        nodes = await driver.get_many(expected_nodes(run))
        missing = set(expected_nodes(run)) - {t.id for t in nodes}
        if missing:
            problems.append(f"workflow run {run} has no task for {sorted(missing)}")
        for t in nodes:
            if t.status is not Status.DONE:
                problems.append(f"node {t.id} ended {t.status.value}, not done ({t.last_error})")
    counts = await backend.counts(queue=backend.queue)
    total = sum(counts.get(backend.queue, {}).values())
    want = len(runs) * (1 + len(expected_nodes("x")))
    if total != want:
        problems.append(f"queue {backend.queue!r} holds {total} tasks, runs need exactly {want}")
    return problems
