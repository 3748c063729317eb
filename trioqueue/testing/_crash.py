"""``run_crash_test``: SIGKILL and SIGSTOP worker processes at random; check nothing is lost.

The harness pushes tasks, runs worker subprocesses (``_crash_worker``) whose
handler appends ``"<task id> <pid> <attempt>"`` to a ledger file with fsync,
kills one of them with SIGKILL at a random moment of each round and starts a
new one, then (``stalls``) stops one with SIGSTOP for longer than the lease
and resumes it with SIGCONT, stops the survivors with SIGTERM, then runs
burst workers until every lease of the dead has expired and been rescued and
the queue is drained. Then:

- every pushed task is DONE in storage, once (no duplicate, no stray row);
- every pushed task ran at least once (it is in the ledger), but those cancelled;
- a task ran more than once only if a process it ran in was SIGKILLed or
  stopped;
- with ``cancels``, a task whose ``cancel_task`` returned True ends
  CANCELLED, one for which it returned False (already finished) DONE; with
  ``pauses``, the queue is paused across a kill and resumed after it;
- with ``flows``, workflow runs (``_crash_flows``) on a queue of their own
  each end DONE with their whole result, every node DONE once in storage and
  nothing more created; a node, like a task, ran more than once only if a
  process it ran in was SIGKILLed or stopped;
- no task was started under a lease it no longer held: each attempt counts
  a claim, so the attempts a task was started with grow in ledger order (a
  stalled worker starting the task it had prefetched, after another worker
  claimed and started it again, writes a smaller attempt after a larger one).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import trio

from .._backend import Backend
from .._open import open_backend
from .._task import Status, Task, TaskId
from ._crash_flows import check_runs, expected_nodes, flow_queue, push_runs
from ._crash_worker import load_opener

__all__ = ["CrashReport", "CrashTestFailure", "run_crash_test", "stale_starts"]

log = logging.getLogger("trioqueue.testing.crash")


@dataclass(frozen=True, slots=True)
class CrashReport:
    """What a crash test did and saw.

    Attributes:
      tasks: Tasks pushed.
      rounds: Kill rounds run.
      kills: Worker processes SIGKILLed.
      runs: Handler runs in the ledger (all processes).
      reruns: Runs beyond the first of each task.
      rerun_tasks: Ids of the tasks that ran more than once.
      drains: Burst workers needed to drain the queue at the end.
      seconds: Wall-clock duration.
      workdir: The folder holding the ledger and the workers' logs.
      stalls: Worker processes stopped (SIGSTOP) past the lease, then resumed.
      cancelled: Tasks ``cancel_task`` cancelled (or flagged) during the rounds.
      pauses: Times the queue was paused across a kill.
      flows: Workflow runs started (each with its nodes in the ledger).
    """

    tasks: int
    rounds: int
    kills: int
    runs: int
    reruns: int
    rerun_tasks: tuple[str, ...]
    drains: int
    seconds: float
    workdir: str
    stalls: int = 0
    cancelled: int = 0
    pauses: int = 0
    flows: int = 0


class CrashTestFailure(AssertionError):
    """Raised by ``run_crash_test`` when a promise was broken.

    Attributes:
      problems: One line per broken promise (lost task, unjustified rerun...).
      report: The ``CrashReport`` of the run.
    """

    def __init__(self, problems: Sequence[str], report: CrashReport) -> None:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"crash test broke {len(problems)} promise(s) "
            f"(kills={report.kills}, ledger and logs in {report.workdir}):\n  {shown}{more}"
        )
        self.problems = list(problems)
        self.report = report


def _read_ledger(path: str) -> list[tuple[str, int, int]]:
    """Return the ledger's starts in order: (task id, pid, attempt)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def stale_starts(runs: Sequence[tuple[str, int, int]]) -> list[str]:
    """Return one line per start made under a lease its worker no longer held.

    Args:
      runs: The ledger's starts in the order they were written: (task id,
        pid, attempt). Each claim counts an attempt, so a start whose attempt
        is not above one written before it, for the same task, came from a
        claim that another had already superseded.
    """
    problems = []
    latest: dict[str, tuple[int, int]] = {}
    for id, pid, attempt in runs:
        seen = latest.get(id)
        if seen is not None and attempt <= seen[0]:
            problems.append(
                f"task {id} was started by process {pid} with attempt {attempt} after "
                f"process {seen[1]} had started attempt {seen[0]}: a worker started a "
                f"task it no longer held"
            )
        if seen is None or attempt > seen[0]:
            latest[id] = (attempt, pid)
    return problems


async def _poll(ready: Callable[..., bool], *args: object, limit: float) -> None:
    """Wait up to ``limit`` seconds for ``ready(*args)``: state other processes leave in files."""
    with trio.move_on_after(limit):
        while not ready(*args):  # noqa: ASYNC110 - no event crosses the process boundary
            await trio.sleep(0.02)


def _is_up(proc: trio.Process, marker: str) -> bool:
    return proc.returncode is not None or os.path.exists(marker)


async def run_crash_test(
    url: str,
    *,
    opener: str | None = None,
    queue: str = "crash",
    tasks: int = 40,
    workers: int = 2,
    rounds: int = 5,
    concurrency: int = 4,
    lease_seconds: float = 1.5,
    sleep_max: float = 0.05,
    kill_within: float = 0.4,
    drain_timeout: float = 120.0,
    stalls: int = 0,
    stall_seconds: float | None = None,
    cancels: int = 0,
    pauses: int = 0,
    flows: int = 0,
    seed: int | None = None,
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> CrashReport:
    """Push tasks, SIGKILL workers at random over ``rounds``, drain, and check the outcome.

    Each round waits until the chosen worker has started a task, waits a
    random time below ``kill_within`` seconds more, SIGKILLs it and starts a
    replacement. Leases are short so that the final burst workers rescue
    what the dead held.

    Args:
      url: The backend URL, shared by every process (not ``memory://``).
      opener: ``"module:function"`` opening ``url`` like ``trioqueue.open_backend``
        (``opener(url, queue=...)``), for backends it does not know.
      queue: The queue used; it should be empty.
      tasks: How many tasks to push.
      workers: Worker processes alive during the rounds.
      rounds: How many workers to kill.
      concurrency: Each worker's concurrency (and prefetch).
      lease_seconds: The workers' lease.
      sleep_max: Longest random sleep of the handler, seconds.
      kill_within: Longest random wait before a kill, seconds.
      drain_timeout: Seconds allowed for the final drain.
      stalls: How many times to stop a worker with SIGSTOP (after the kill
        rounds) and resume it with SIGCONT.
      stall_seconds: How long each stall lasts (default: three leases, so
        that another worker rescues and runs what the stalled one held).
      cancels: How many tasks to cancel (``cancel_task``) at random moments
        of the rounds: pending, running or finished ones alike.
      pauses: How many rounds pause the queue before the kill and resume it
        after the replacement started.
      flows: How many workflow runs to start (``_crash_flows``: a DAG with a
        fan-out, a map and a join) beside the tasks; the workers serve them too.
      seed: Seed of the random kill schedule.
      workdir: Folder for the ledger and logs (default: a new temporary one).
      env: Environment of the worker processes (default: this one's), e.g.
        a ``PYTHONPATH`` under which ``opener`` imports.

    Returns:
      A ``CrashReport``.

    Raises:
      CrashTestFailure: naming each lost task, task not DONE, and task run
        again without a kill of a process it ran in.
      ValueError: for ``memory://``, which no other process can see.
    """
    if url.startswith("memory:"):
        raise ValueError("the crash test needs a backend shared by processes, not memory://")
    rng = random.Random(seed)
    began = time.monotonic()
    workdir = workdir or tempfile.mkdtemp(prefix="trioqueue-crash-")
    ledger = os.path.join(workdir, "ledger.txt")
    logfile = open(os.path.join(workdir, "workers.log"), "ab")  # noqa: ASYNC230
    open_it = load_opener(opener) if opener else open_backend
    proc_env = dict(os.environ if env is None else env)

    async with open_it(url, queue=queue) as backend:
        ids = [str(TaskId.new()) for _ in range(tasks)]
        batch = [Task({"n": i}, TaskId(id), max_attempts=10_000) for i, id in enumerate(ids)]
        await backend.push_all(batch)
    async with open_it(url, queue=flow_queue(queue)) as backend:
        flow_runs = await push_runs(backend, flows)
    nodes = [id for run in flow_runs for id in expected_nodes(run)]

    def command(burst: bool) -> list[str]:
        cmd = [sys.executable, "-m", "trioqueue.testing._crash_worker", "--url", url]
        cmd += ["--queue", queue, "--ledger", ledger, "--lease", str(lease_seconds)]
        cmd += ["--concurrency", str(concurrency), "--sleep-max", str(sleep_max)]
        if opener:
            cmd += ["--opener", opener]
        if flows:
            cmd += ["--flows"]
        return cmd + (["--burst"] if burst else ["--ready-dir", workdir])

    async def spawn(burst: bool = False) -> trio.Process:
        cmd = command(burst)
        return await trio.lowlevel.open_process(cmd, env=proc_env, stdout=logfile, stderr=logfile)

    killed: set[int] = set()
    stalled: set[int] = set()
    stops = 0
    problems: list[str] = []
    stall_for = lease_seconds * 3 if stall_seconds is None else stall_seconds

    def has_worked(pid: int) -> bool:
        return any(p == pid for _, p, _ in _read_ledger(ledger))

    to_cancel = rng.sample(ids, min(cancels, len(ids)))
    cancelled: dict[str, bool] = {}  # id -> what cancel_task returned
    paused = 0

    async def cancel_some(control: Backend, n: int) -> None:
        for _ in range(n):
            if to_cancel:
                id = to_cancel.pop()
                cancelled[id] = await control.cancel_task(id)

    try:
        procs = [await spawn() for _ in range(workers)]
        async with open_it(url, queue=queue) as control:
            per_round = -(-len(to_cancel) // max(rounds, 1))
            for r in range(rounds):
                i = rng.randrange(len(procs))
                victim = procs[i]
                await _poll(has_worked, victim.pid, limit=3.0)
                await cancel_some(control, per_round)
                pause = r < pauses
                if pause:
                    await control.pause(queue)
                    paused += 1
                await trio.sleep(rng.uniform(0.0, kill_within))
                if victim.returncode is None:
                    victim.send_signal(signal.SIGKILL)
                    killed.add(victim.pid)
                else:
                    problems.append(
                        f"worker {victim.pid} died by itself (code {victim.returncode})"
                    )
                await victim.wait()
                procs[i] = await spawn()
                if pause:
                    await control.resume(queue)
            await cancel_some(control, len(to_cancel))
        for _ in range(stalls):
            victim = procs[rng.randrange(len(procs))]
            await _poll(has_worked, victim.pid, limit=3.0)
            await trio.sleep(rng.uniform(0.0, kill_within))
            if victim.returncode is not None:
                problems.append(f"worker {victim.pid} died by itself (code {victim.returncode})")
                continue
            victim.send_signal(signal.SIGSTOP)
            stalled.add(victim.pid)
            stops += 1
            await trio.sleep(stall_for)  # the stall itself: its leases run out
            victim.send_signal(signal.SIGCONT)
            await trio.sleep(lease_seconds)  # let it run again before the next step
        for p in procs:
            ready = os.path.join(workdir, f"ready.{p.pid}")
            await _poll(_is_up, p, ready, limit=30.0)
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        hung: set[int] = set()
        for p in procs:
            with trio.move_on_after(30):
                await p.wait()
            if p.returncode is None:
                # A worker that ignores SIGTERM breaks the graceful-shutdown
                # promise; its kill does not excuse the reruns of its tasks.
                problems.append(f"worker {p.pid} did not stop within 30s of SIGTERM")
                p.send_signal(signal.SIGKILL)
                hung.add(p.pid)
                await p.wait()
        for p in procs:
            if p.pid not in killed | hung and p.returncode != 0:
                problems.append(f"worker {p.pid} exited with code {p.returncode} on SIGTERM")

        drains = 0
        deadline = trio.current_time() + drain_timeout
        async with open_it(url, queue=queue) as backend:
            while True:
                p = await spawn(burst=True)
                drains += 1
                with trio.move_on_after(max(1.0, deadline - trio.current_time())):
                    await p.wait()
                if p.returncode is None:
                    p.send_signal(signal.SIGKILL)
                    await p.wait()
                    problems.append(f"burst worker {p.pid} did not finish within the drain time")
                    break
                if p.returncode != 0:
                    problems.append(f"burst worker {p.pid} exited with code {p.returncode}")
                counts = await backend.counts()
                per = counts.get(queue, {})
                flow_per = counts.get(flow_queue(queue), {})
                if not any(
                    n for s, n in [*per.items(), *flow_per.items()] if not Status(s).is_final
                ):
                    break
                if trio.current_time() > deadline:
                    problems.append(f"queue not drained after {drain_timeout}s: {per}")
                    break
                await trio.sleep(lease_seconds / 2)
            stored = {id: await backend.driver.get(id) for id in ids}
            counts = await backend.counts(queue=queue)
        async with open_it(url, queue=flow_queue(queue)) as backend:
            problems += await check_runs(backend, flow_runs)
    finally:
        logfile.close()

    total = sum(counts.get(queue, {}).values())
    if total != tasks:
        problems.append(f"queue {queue!r} holds {total} tasks, {tasks} were pushed")
    for id, rec in stored.items():
        want = Status.CANCELLED if cancelled.get(id) else Status.DONE
        if rec is None:
            problems.append(f"task {id} was lost: it is no longer in storage")
        elif rec.status is not want:
            problems.append(
                f"task {id} ended {rec.status.value}, not {want.value} ({rec.last_error})"
                + (" after cancel_task returned True" if cancelled.get(id) else "")
            )
    runs = _read_ledger(ledger)
    per_task: dict[str, list[int]] = {}
    for id, pid, _ in runs:
        per_task.setdefault(id, []).append(pid)
    for id in ids + nodes:
        pids = per_task.get(id)
        if not pids:
            if not cancelled.get(id):
                problems.append(f"task {id} never ran (not in the ledger)")
            continue
        unjustified = [p for p in pids[:-1] if p not in killed | stalled]
        if unjustified:
            problems.append(
                f"task {id} ran {len(pids)} times though process(es) {unjustified} "
                f"that ran it were never killed or stopped"
            )
    problems += stale_starts(runs)
    counter = Counter(id for id, _, _ in runs)
    reruns = sum(n - 1 for n in counter.values())
    report = CrashReport(
        tasks=tasks,
        rounds=rounds,
        kills=len(killed),
        runs=len(runs),
        reruns=reruns,
        rerun_tasks=tuple(sorted(id for id, n in counter.items() if n > 1)),
        drains=drains,
        seconds=round(time.monotonic() - began, 3),
        workdir=workdir,
        stalls=stops,
        cancelled=sum(cancelled.values()),
        pauses=paused,
        flows=len(flow_runs),
    )
    if problems:
        raise CrashTestFailure(problems, report)
    log.info("crash test passed: %s", report)
    return report
