"""The mixed deployment: CLI workers, an embedded worker, a producer and an operator at once.

Processes (each ``trioqueue worker`` serves two handlers of ``app.py``):

- ``w1``: ``app:work app:tick``, lease 3 s; SIGKILLed while it runs a task, then restarted;
- ``w2``: ``app:work app:flow``, the default lease and a prefetch of 1; at the end
  the only worker of app:work: a buffered and a running task are cancelled
  from this process, then it gets two SIGTERMs while it runs tasks;
- ``w3``: ``app:tick app:flow``, lease 3 s; stopped (SIGTERM, or SIGKILL when
  shuffled) while ``w1`` is down, then restarted;
- ``lib``: a program serving ``app:lib`` with ``Retention(interval=0.3)`` as
  its default;
- (long version) ``x0``, ``x1``: more workers of ``app:work app:tick``.

``tick`` has an ``every(1)`` schedule added in ``configure_worker`` with its
default name, so every worker of app:tick pushes its ticks. Meanwhile this
process pushes through the API and the command line (tasks in five queues,
workflow runs, tasks due in an hour), sets two queues' retention with the
CLI and ages finished tasks with SQL, cancels and purges a queue of 300
tasks with the CLI, deploys a fix for the tasks and the workflow node that
ended KILLED and retries them with ``retry --status killed --queue Q``,
pauses app:work and pushes to it, and at the end drains app:work with
``worker --burst`` while tasks are due later.

``run_mixed`` returns an ``Observation``; ``invariants.py`` judges it.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from scenarios.deploy import CliRun, Completion, Deployment, Proc, open_deployment, tail
from scenarios.scenario_app import HOLD, buggy, flaky, flow

import trioqueue as tq
from trioqueue import Status

WORK, TICK, FLOW, LIB = "app:work", "app:tick", "app:flow", "app:lib"
KEEP_AGE = 30 * 86400.0  # past every default retention
SHORT_RULE_AGE = 2 * 3600.0  # past app:lib's stored rule (1h), within the default (1d)
DEFAULT_AGE = 2 * 86400.0  # past the default retention of done tasks (1d)
#: The worker options of the deployment; w1 and w3 get a short lease, so what
#: a SIGKILL leaves is claimed again within seconds.
COMMON = ("--concurrency", "4", "--shutdown-timeout", "10")
SHORT_LEASE = ("--lease", "3")


@dataclass(frozen=True, slots=True)
class Plan:
    """How big a deployment is and, for the long version, how it is shuffled."""

    work: int = 40  # tasks pushed to app:work through the API, per round
    runs: int = 12  # workflow runs (two with a node that fails until fixed)
    scratch: int = 300  # tasks cancelled and purged in bulk (over ~275: PostgreSQL's NOTIFY)
    rounds: int = 1  # kill-and-restart rounds
    extra: int = 0  # more workers of app:work and app:tick (lease 3 s), stopped before the end
    seed: int | None = None  # None: the fixed order (the fast version)


@dataclass
class Observation:
    """What a run of the deployment did, and the store and the ledger at its end."""

    backend: str
    plan: Plan
    #: Every id the producer pushed (tasks and workflow runs), by queue.
    pushed: dict[str, set[str]] = field(default_factory=dict)
    #: The statuses each pushed task may end in (one, but where the order of
    #: two processes decides).
    expected: dict[str, frozenset[Status]] = field(default_factory=dict)
    #: Ids pushed with a run_at an hour ahead (pending until cancelled at the end).
    delayed: set[str] = field(default_factory=set)
    #: Ids an explicit ``purge`` deleted.
    purged: set[str] = field(default_factory=set)
    #: Workflow runs: run id -> the n it was pushed with.
    runs: dict[str, int] = field(default_factory=dict)
    #: Finished tasks aged on purpose: those their queue's rule keeps, those it prunes.
    aged_kept: set[str] = field(default_factory=set)
    aged_pruned: set[str] = field(default_factory=set)
    #: app:work tasks pushed while it was paused: when it was resumed.
    paused_until: dict[str, float] = field(default_factory=dict)
    #: Seconds from a cross-process ``cancel_task`` of a running or a buffered
    #: task to its CANCELLED (None: over 3 s).
    cancel_latency: list[tuple[str, float | None]] = field(default_factory=list)
    #: When the workers were told to stop (the ticks before it must have run).
    stopped_at: float = 0.0
    #: Each worker stopped by signals: (name, signals sent, exit status).
    exits: list[tuple[str, list[str], int]] = field(default_factory=list)
    killed_pids: set[int] = field(default_factory=set)
    commands: list[CliRun] = field(default_factory=list)
    #: ``trioqueue schedules --queue app:tick --json`` at the end.
    schedules: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, tq.Task[Any]] = field(default_factory=dict)
    ledger: list[Completion] = field(default_factory=list)
    #: The end of each process's log, for failure messages.
    logs: dict[str, str] = field(default_factory=dict)

    def queue_of(self, id: str) -> str:
        """The queue a pushed task went to."""
        return next(q for q, ids in self.pushed.items() if id in ids)

    def push(self, queue: str, ids: list[str], *statuses: Status) -> None:
        """Note tasks pushed to ``queue`` that must end in one of ``statuses`` (default DONE)."""
        self.pushed.setdefault(queue, set()).update(ids)
        for id in ids:
            self.expected[id] = frozenset(statuses or (Status.DONE,))


class Mixed:
    """The steps of the mixed deployment, on one ``Deployment``."""

    def __init__(self, dep: Deployment, plan: Plan, obs: Observation) -> None:
        self.dep = dep
        self.plan = plan
        self.obs = obs
        self.rng = random.Random(plan.seed)
        #: app:work tasks that end KILLED until the fix is deployed.
        self.buggy_work: set[str] = set()
        self._next = 0

    def numbers(self, count: int) -> list[int]:
        """The next ``count`` args (every task gets its own number)."""
        first = self._next
        self._next += count
        return list(range(first, first + count))

    # -- producing -------------------------------------------------------------

    async def push_work(self, count: int) -> list[str]:
        ns = self.numbers(count)
        ids = [str(id) for id in await self.dep.backend.push_bulk(ns)]
        self.obs.push(WORK, ids)
        self.buggy_work.update(id for id, n in zip(ids, ns, strict=True) if buggy(n))
        return ids

    async def push_tasks(
        self, queue: str, count: int, status: Status = Status.DONE, **options: Any
    ) -> list[str]:
        if "delay" in options:
            options["run_at"] = datetime.now(UTC) + timedelta(seconds=options.pop("delay"))
        tasks = [tq.Task(n, queue=queue, **options) for n in self.numbers(count)]
        assert await self.dep.backend.push_all(tasks) == count
        ids = [str(t.id) for t in tasks]
        self.obs.push(queue, ids, status)
        return ids

    async def push_delayed(self, count: int) -> None:
        backend = self.dep.backend
        ids = [str(await backend.push(n, delay=3600)) for n in self.numbers(count)]
        self.obs.push(WORK, ids, Status.CANCELLED)  # by the operator, at the end
        self.obs.delayed.update(ids)

    async def push_flaky(self, count: int) -> None:
        """Push tasks whose first attempt fails (a retry run_at ahead)."""
        ns = [n for n in self.numbers(5 * count) if flaky(n)]
        ids = [str(id) for id in await self.dep.backend.push_bulk(ns)]
        # Their retry is due in a second or so: run then, or cancelled as FAILED.
        self.obs.push(WORK, ids, Status.DONE, Status.CANCELLED)
        self.obs.delayed.update(ids)

    async def push_cli(self, n: int) -> None:
        run = await self.dep.cli("push", WORK, str(n))
        assert run.ok, run
        self.obs.push(WORK, [run.out.strip()])

    async def push_runs(self, count: int) -> None:
        backend = self.dep.on_queue(FLOW)
        for n in self.numbers(count):
            run_id = str(await flow.push(backend, n))
            self.obs.runs[run_id] = n
            self.obs.push(FLOW, [run_id])

    # -- the operator's steps ----------------------------------------------------

    async def set_retention(self) -> None:
        # A refused command is recorded; the invariants judge it.
        await self.dep.cli_all(("retention", WORK, "--keep"), ("retention", LIB, "--done", "1h"))

    async def prepare_aged(self) -> None:
        """Finished tasks in three queues aged past a retention; wait for app:lib's prune."""
        lib = await self.push_tasks(LIB, 12)
        orphan = await self.push_tasks("orphan", 6, Status.CANCELLED, delay=3600)
        for id in orphan:
            assert await self.dep.backend.cancel_task(id)
        await self.dep.wait_final([*lib, *orphan], limit=30)
        done_work = await self.done_work(8)
        self.dep.age(lib[:6], DEFAULT_AGE)
        self.dep.age(lib[6:], SHORT_RULE_AGE)
        self.dep.age(orphan, KEEP_AGE)
        self.dep.age(done_work, KEEP_AGE)
        self.obs.aged_pruned.update(lib)
        self.obs.aged_kept.update([*orphan, *done_work])

        async def pruned() -> bool:  # app:lib's worker pruned what every rule prunes
            return set((await self.dep.statuses(lib[:6])).values()) == {None}

        # Judged at the end (retention_by_rule); past this, waiting more would not help.
        await self.dep.within(pruned, limit=20)

    async def done_work(self, count: int) -> list[str]:
        """Wait for ``count`` DONE app:work tasks; return their ids."""
        found: list[str] = []

        async def enough() -> bool:
            done = await self.dep.backend.list_tasks(queue=WORK, status=Status.DONE, limit=count)
            found[:] = [str(t.id) for t in done]
            return len(found) == count

        await self.dep.wait_until(f"{count} app:work tasks done", enough, limit=60)
        return found

    async def kill_while_running(self, proc: Proc) -> None:
        """SIGKILL ``proc`` once it runs an app:work task (and, shuffled, has run a few)."""
        ran = self.rng.randint(0, 6) if self.plan.seed is not None else 0

        async def busy() -> bool:
            if sum(1 for c in self.dep.ledger() if c.pid == proc.pid) < ran:
                return False
            running = await self.dep.backend.list_tasks(queue=WORK, status=Status.RUNNING)
            return any((t.worker or "").endswith(f":{proc.pid}") for t in running)

        await self.dep.wait_until(f"{proc.name} runs a task", busy, limit=60)
        self.dep.kill(proc)
        await self.dep.exited(proc)

    async def stop(self, proc: Proc) -> None:
        """Stop ``proc`` with SIGTERM; record its exit."""
        self.dep.send(proc, signal.SIGTERM)
        code = await self.dep.exited(proc)
        self.obs.exits.append((proc.name, list(proc.signals), code))

    async def hold(self, count: int) -> tuple[list[str], list[str]]:
        """Push ``count`` tasks that run until cancelled, first in line, to app:work's one worker.

        Returns their ids once all but one run and that one waits in the
        worker's buffer (it has ``count - 1`` slots and a prefetch of 1):
        (running, buffered).
        """
        ids = [str(await self.dep.backend.push(HOLD, priority=10)) for _ in range(count)]
        self.obs.push(WORK, ids, Status.CANCELLED)
        running: list[str] = []
        buffered: list[str] = []

        async def held() -> bool:
            found = [t for id in ids if (t := await self.dep.backend.get_task(id)) is not None]
            running[:] = [str(t.id) for t in found if t.status is Status.RUNNING]
            buffered[:] = [str(t.id) for t in found if t.status is Status.QUEUED]
            return (len(running), len(buffered)) == (count - 1, 1)

        await self.dep.wait_until("the held tasks run or wait", held, limit=30)
        return running, buffered

    async def cancel_held(self) -> list[str]:
        """Cancel a buffered and a running task from this process; time how long each takes.

        Returns the held tasks still running.
        """
        running, buffered = await self.hold(5)

        async def cancel(what: str, id: str) -> None:
            assert await self.dep.backend.cancel_task(id)

            async def cancelled() -> bool:
                task = await self.dep.backend.get_task(id)
                return task is not None and task.status is Status.CANCELLED

            # The target is 1 s: waiting much longer would only time a defect.
            self.obs.cancel_latency.append((what, await self.dep.within(cancelled, limit=3)))

        await together(
            lambda: cancel("buffered", buffered[0]), lambda: cancel("running", running[0])
        )
        return running[1:]

    async def interrupt(self, proc: Proc, held: list[str]) -> None:
        """Stop ``proc`` while it runs ``held``: SIGTERM, and a second one during its shutdown.

        Trio merges a signal that comes again before the first is handled,
        so the second is sent once the worker has logged its graceful
        shutdown. The held tasks, released, are cancelled then.
        """
        self.dep.send(proc, signal.SIGTERM)
        await self.dep.wait_log(proc, "received SIGTERM: graceful shutdown")
        self.dep.send(proc, signal.SIGTERM)
        code = await self.dep.exited(proc)
        self.obs.exits.append((proc.name, list(proc.signals), code))
        for id in held:
            await self.dep.backend.cancel_task(id)  # judged at the end

    async def deploy_fix_and_retry(self) -> None:
        """Once the broken runs ended KILLED, deploy the fix and retry in bulk with the CLI."""
        broken_runs = [id for id, n in self.obs.runs.items() if buggy(n)]

        async def all_killed() -> bool:
            statuses = await self.dep.statuses(broken_runs)
            return all(s is Status.KILLED for s in statuses.values())

        await self.dep.wait_until("the broken runs end killed", all_killed, limit=60)
        (self.dep.home / "fixed").touch()
        # What a live worker started before the fix ends KILLED (at once: it
        # aborts); what starts after it runs fixed.
        live = tuple(f":{p.pid}" for p in self.dep.procs if p.running)

        async def none_aborting() -> bool:
            running = await self.dep.backend.list_tasks(queue=WORK, status=Status.RUNNING)
            return not any(
                str(t.id) in self.buggy_work and (t.worker or "").endswith(live) for t in running
            )

        await self.dep.wait_until("the broken tasks running end", none_aborting, limit=30)
        await self.dep.cli_all(
            ("retry", "--status", "killed", "--queue", WORK, "--yes"),
            ("retry", "--status", "killed", "--queue", FLOW, "--yes"),
        )

    async def cancel_and_purge_scratch(self) -> None:
        """Cancel then purge a whole queue of tasks with the CLI."""
        count = self.plan.scratch
        if self.plan.seed is not None:
            count = self.rng.randint(1, count)
        ids = await self.push_tasks("scratch", count, delay=3600)
        await self.dep.cli("cancel", "--queue", "scratch", "--yes")
        await self.dep.cli("purge", "--queue", "scratch", "--yes")
        self.obs.purged.update(ids)

    async def pause_and_resume(self) -> None:
        """Pause app:work, push to it, let two ticks run elsewhere, resume it."""
        await self.dep.backend.pause(WORK)
        ids = await self.push_work(8)
        since = time.time()

        async def ticks_went_on() -> bool:
            ticks = (await self.dep.tasks(TICK)).values()
            return (
                len({tick_time(t) for t in ticks if tick_time(t) > since and t.status.is_final})
                >= 2
            )

        await self.dep.wait_until("two ticks while app:work is paused", ticks_went_on, limit=30)
        resumed_at = time.time()
        await self.dep.backend.resume(WORK)
        self.obs.paused_until.update(dict.fromkeys(ids, resumed_at))

    async def settle(self) -> None:
        """Wait until every pushed task is final but the delayed ones, and the ticks too."""
        left = set(self.obs.expected) - self.obs.purged - self.obs.delayed
        await self.dep.wait_final(left, limit=90)

        async def ticks_final() -> bool:
            horizon = time.time() - 3
            ticks = (await self.dep.tasks(TICK)).values()
            return all(t.status.is_final for t in ticks if tick_time(t) < horizon)

        await self.dep.wait_until("the ticks run", ticks_final, limit=30)


def tick_time(task: tq.Task[Any]) -> float:
    """The tick (POSIX time) a schedule's task was pushed for."""
    text = str(task.meta["tick"]).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


async def together(*steps: Callable[[], Awaitable[object]]) -> None:
    """Run these steps at once; return when all have."""
    async with trio.open_nursery() as nursery:
        for step in steps:
            nursery.start_soon(step)


async def _deploy(m: Mixed) -> None:
    dep, plan, obs = m.dep, m.plan, m.obs
    w1 = await dep.worker("w1", "work", "tick", options=[*COMMON, *SHORT_LEASE])
    w2 = await dep.worker("w2", "work", "flow", options=[*COMMON, "--prefetch", "1"])
    w3 = await dep.worker("w3", "tick", "flow", options=[*COMMON, *SHORT_LEASE])
    lib = await dep.program("lib", "serve_lib")
    serves = {"w1": (WORK, TICK), "w2": (WORK, FLOW), "w3": (TICK, FLOW), "lib": (LIB,)}

    extra = [
        await dep.worker(f"x{i}", "work", "tick", options=[*COMMON, *SHORT_LEASE])
        for i in range(plan.extra)
    ]

    async def serving() -> None:
        for proc in (w1, w2, w3, lib):
            await dep.wait_serving(proc, serves[proc.name])
        for proc in extra:
            await dep.wait_serving(proc, serves["w1"])

    await together(serving, m.set_retention, lambda: m.push_cli(m.numbers(1)[0]))
    await m.push_runs(plan.runs)
    await m.push_work(10)
    await m.push_delayed(4)
    await m.prepare_aged()
    shuffled = plan.seed is not None
    for round in range(plan.rounds):
        if round:
            await m.push_runs(plan.runs // 2)
        await m.push_work(plan.work)
        await m.kill_while_running(w1)
        if shuffled and m.rng.random() < 0.5:  # at whatever moment it is
            dep.kill(w3)
            await dep.exited(w3)
        else:
            await m.stop(w3)
        # The operator's bulk commands, at once (they touch different queues).
        steps = [m.deploy_fix_and_retry] if round == 0 else []
        if round == 0 or shuffled:
            steps.append(m.cancel_and_purge_scratch)
        await together(*steps)
        w1, w3 = await dep.restart(w1), await dep.restart(w3)
        await dep.wait_serving(w1, serves["w1"])
        await dep.wait_serving(w3, serves["w3"])
        if shuffled or round == plan.rounds - 1:
            await m.pause_and_resume()
    await m.settle()
    obs.stopped_at = time.time()
    for proc in (w1, w3, lib, *extra):
        await m.stop(proc)
    # Now w2 (the default lease) is app:work's only worker, and it is idle.
    await m.interrupt(w2, await m.cancel_held())
    # A burst drain, with tasks due later: it must leave them for later.
    await m.push_flaky(4)

    async def schedules() -> None:
        run = await dep.cli("schedules", "--queue", TICK, "--json")
        obs.schedules = json.loads(run.out) if run.ok else []

    await together(lambda: dep.cli("worker", WORK, FLOW, "--burst", *COMMON), schedules)
    await dep.cli("cancel", "--queue", WORK, "--status", "pending", "--status", "failed", "--yes")


async def run_mixed(dep: Deployment, plan: Plan, backend: str) -> Observation:
    """Run the mixed deployment on ``dep``; return what it saw, the store and the ledger."""
    obs = Observation(backend, plan)
    try:
        await _deploy(Mixed(dep, plan, obs))
        obs.tasks = await dep.tasks()
        obs.ledger = dep.ledger()
    finally:
        obs.commands = list(dep.commands)
        obs.killed_pids = set(dep.killed)
        obs.logs = {p.name: tail(p.log) for p in dep.procs}
    return obs


def deploy_mixed(home: Path, url: str, plan: Plan, backend: str) -> Observation:
    """Run the mixed deployment in ``home`` on ``url`` (a Trio run of its own)."""

    async def main() -> Observation:
        async with open_deployment(home, url, (WORK, FLOW)) as dep:
            return await run_mixed(dep, plan, backend)

    return trio.run(main)
