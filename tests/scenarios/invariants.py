"""The invariants a deployment's ``Observation`` must hold; each returns what it found wrong.

Each check is a pure function of the observation, returning a list of
violations (empty: the invariant holds), so the fast test asserts them one
by one and the long test all at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from scenarios.mixed import TICK, Observation, tick_time
from scenarios.scenario_app import NODES, buggy, expected_run_result

from trioqueue import Status

#: How far a task may start before its run_at (the stored times' rounding).
CLOCK_SLACK = 0.002
#: The longest a running task may take to end after a ``cancel ID`` from another process.
CANCEL_WITHIN = 1.0


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _examples(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def commands_succeeded(obs: Observation) -> list[str]:
    """Every command-line run of the operator exited 0 without a traceback."""
    return [
        f"`trioqueue {' '.join(c.args)}` exited {c.code}: {c.err.strip()[-600:]}"
        for c in obs.commands
        if not c.ok
    ]


def every_task_ends_once(obs: Observation) -> list[str]:
    """Each pushed task is in the store in the final status it must end in, or purged.

    Only an explicit purge (and the retention its queue's rule asks for)
    may remove a task; ids are unique, so a task present is there once.
    """
    wrong: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for queue, ids in sorted(obs.pushed.items()):
        for id in sorted(ids):
            task = obs.tasks.get(id)
            gone = id in obs.purged or id in obs.aged_pruned
            if gone:
                if task is not None:
                    wrong[(queue, "purged or pruned", task.status.value)].append(id)
                continue
            want = obs.expected[id]
            got = "missing" if task is None else task.status.value
            if task is None or task.status not in want:
                wrong[(queue, " or ".join(sorted(s.value for s in want)), got)].append(id)
    return [
        f"{queue}: {len(ids)} task(s) should be {want} but are {got}: {_examples(ids)}"
        for (queue, want, got), ids in sorted(wrong.items())
    ]


def _ended_run(obs: Observation, id: str) -> bool:
    """Whether ``id`` is a node of a run that ended KILLED before it was retried.

    Ending the run cancels the nodes that still run; one whose handler had
    returned just before is CANCELLED all the same, its effect done.
    """
    run_id, slash, _ = id.partition("/")
    return bool(slash) and run_id in obs.runs and buggy(obs.runs[run_id])


def _result_of(attempt: int, pid: int) -> dict[str, int]:
    return {"attempt": attempt, "pid": pid}  # what app.record returns


def _names_pid(result: Any) -> bool:
    return isinstance(result, dict) and "pid" in result  # not a flow node's


def side_effects_once(obs: Observation) -> list[str]:
    """Each DONE task's successful attempt has exactly one ledger line; others come from a SIGKILL.

    At-least-once: an attempt that completed in a process SIGKILLed before
    its outcome was stored runs again (its line stays). So: no attempt of a
    task completes twice; a DONE task has one line for the attempt its
    result names, written by the process its result names; every other line
    was written by a SIGKILLed process (or by a node whose run ended KILLED
    as it completed).
    """
    lines = Counter((c.task_id, c.attempt) for c in obs.ledger)
    found = [f"attempt {a} of {id} completed {n} times" for (id, a), n in lines.items() if n > 1]
    by_task: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for c in obs.ledger:
        by_task[c.task_id].append((c.attempt, c.pid))
    for id, task in obs.tasks.items():
        if id in obs.runs:  # a run record: no handler of its own
            continue
        done = by_task.get(id, [])
        final = [(a, pid) for a, pid in done if task.status is Status.DONE and a == task.attempts]
        if task.status is Status.DONE:
            if len(final) != 1:
                found.append(f"{id} is done (attempt {task.attempts}) with ledger lines {done}")
            elif _names_pid(task.result) and task.result != _result_of(*final[0]):
                found.append(f"{id}'s result {task.result} is not its ledger line {final[0]}")
        strays = [(a, pid) for a, pid in done if (a, pid) not in final]
        if any(pid not in obs.killed_pids for _, pid in strays) and not _ended_run(obs, id):
            found.append(f"{id} ({task.status.value}) has lines of live processes: {strays}")
    return found


def each_tick_once(obs: Observation) -> list[str]:
    """One task per tick, each run, and one schedule for it, across processes and restarts."""
    ticks = Counter(tick_time(t) for t in obs.tasks.values() if t.queue == TICK)
    found = [
        f"tick {datetime.fromtimestamp(at).time()} has {n} tasks"
        for at, n in sorted(ticks.items())
        if n > 1
    ]
    if not ticks:
        found.append("no tick ran")
    horizon = obs.stopped_at - 3  # later ticks may wait for the next deployment
    found.extend(
        f"tick task {id} ({tick_time(t) - horizon:.1f}s before the end) is {t.status.value}"
        for id, t in obs.tasks.items()
        if t.queue == TICK and tick_time(t) < horizon and t.status is not Status.DONE
    )
    names = sorted(s["name"] for s in obs.schedules)
    if len(names) != 1:
        found.append(f"{TICK}'s every(1) is {len(names)} schedules in storage: {names}")
    return found


def retention_by_rule(obs: Observation) -> list[str]:
    """Aged finished tasks are pruned only where their queue's stored rule (or server) says so."""
    found = []
    kept = sorted(id for id in obs.aged_kept if id not in obs.tasks)
    if kept:
        queues = Counter(obs.queue_of(id) for id in kept)
        found.append(f"{len(kept)} aged task(s) pruned against their queue's rule: {dict(queues)}")
    left = sorted(id for id in obs.aged_pruned if id in obs.tasks)
    if left:
        found.append(f"{len(left)} aged app:lib task(s) past its stored rule (1h) kept")
    return found


def runs_complete(obs: Observation) -> list[str]:
    """Every workflow run ends DONE with its whole result, each of its nodes DONE once."""
    found = []
    for run_id, n in sorted(obs.runs.items()):
        run = obs.tasks.get(run_id)
        if run is None or run.status is not Status.DONE:
            status = "missing" if run is None else run.status.value
            error = "" if run is None else f" ({run.last_error})"
            found.append(f"run {run_id} (n={n}) ended {status}{error}")
            continue
        if run.result != expected_run_result(n):
            found.append(f"run {run_id} gave {run.result}, not {expected_run_result(n)}")
        nodes = {id: t for id, t in obs.tasks.items() if id.startswith(f"{run_id}/")}
        names = sorted(id.removeprefix(f"{run_id}/") for id in nodes)
        if names != sorted(NODES) or any(t.status is not Status.DONE for t in nodes.values()):
            found.append(f"run {run_id}: nodes {[(i, t.status.value) for i, t in nodes.items()]}")
    return found


def nothing_starts_early(obs: Observation) -> list[str]:
    """No task runs before its run_at, nor one pushed to a paused queue before its resume."""
    found = []
    for id, t in obs.tasks.items():
        started, run_at = _ts(t.started_at), _ts(t.run_at)
        if started is None or run_at is None:
            continue
        # The attempt that made a task DONE started at or after its run_at
        # (another status may hold the run_at of an attempt that never came).
        if t.status is Status.DONE and started < run_at - CLOCK_SLACK:
            found.append(f"{id} ({t.queue}) started {run_at - started:.3f}s before its run_at")
        if started < obs.paused_until.get(id, 0.0):
            found.append(f"{id} started while its queue was paused")
    return found


def cancel_is_prompt(obs: Observation) -> list[str]:
    """A running or buffered task cancelled from another process ends within a second."""
    return [
        f"cancelling a {what} task took {'over 3' if took is None else f'{took:.2f}'}s"
        for what, took in obs.cancel_latency
        if took is None or took > CANCEL_WITHIN
    ]


def workers_exit_cleanly(obs: Observation) -> list[str]:
    """A worker stopped by one SIGTERM exits 0; by two in a row, 130; never by the signal."""
    found = []
    for name, signals, code in obs.exits:
        want = 130 if signals.count("SIGTERM") > 1 else 0
        if code != want:
            found.append(f"{name} got {signals} and exited {code}, not {want}")
    return found


ALL: tuple[Callable[[Observation], list[str]], ...] = (
    commands_succeeded,
    every_task_ends_once,
    side_effects_once,
    each_tick_once,
    retention_by_rule,
    runs_complete,
    nothing_starts_early,
    cancel_is_prompt,
    workers_exit_cleanly,
)
