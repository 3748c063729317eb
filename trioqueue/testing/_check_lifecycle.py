"""Conformance checks of a task's life beyond its status: timestamps, the worker that
claimed it, replacement of finished ones, snoozes, progress, and paused queues."""

from __future__ import annotations

import json

from .._driver import Outcome
from .._task import Status, from_timestamp
from ._context import _Ctx

__all__ = ["claim_worker", "pause", "progress", "replace", "snooze", "timestamps"]


async def timestamps(c: _Ctx) -> None:
    """created_at at push, started_at by start or by a settle's outcome, finished_at at the end."""
    t0 = c.clock.now
    tid = await c.backend.push("ts", id="ts-1")
    rec = await c.get(tid)
    c.near(rec.created_at, t0, "created_at of a task just pushed")
    c.expect(rec.started_at is None, f"a task never started has started_at {rec.started_at!r}")
    c.expect(rec.finished_at is None, f"a new task has finished_at {rec.finished_at!r}")
    c.clock.advance(1.0)
    c.expect(await c.claim("tok") == [tid], f"{tid} not claimable")
    rec = await c.get(tid)
    c.expect(rec.started_at is None, f"claim (not start) set started_at {rec.started_at!r}")
    c.clock.advance(2.0)
    await c.driver.start([tid], "tok")
    rec = await c.get(tid)
    c.near(rec.started_at, t0 + 3.0, "started_at after start")
    c.clock.advance(4.0)
    await c.driver.settle([Outcome(tid, Status.DONE)], "tok")
    rec = await c.status(tid, Status.DONE, "after settle DONE")
    c.near(rec.finished_at, t0 + 7.0, "finished_at after settle DONE")
    c.near(rec.started_at, t0 + 3.0, "started_at after a settle that gave none")
    c.near(rec.created_at, t0, "created_at after the task finished")
    task = await c.backend.get_task(tid)
    if task is None:
        raise c.fail(f"get_task({tid!r}) returned None")
    want = (from_timestamp(t0), from_timestamp(t0 + 3.0), from_timestamp(t0 + 7.0))
    got = (task.created_at, task.started_at, task.finished_at)
    c.expect(
        all(
            g is not None and abs((g - w).total_seconds()) < 1e-3
            for g, w in zip(got, want, strict=True)
        ),
        f"get_task gave created/started/finished {got}, expected {want}",
    )
    # A worker that starts an attempt and settles it at once sends started_at with the outcome.
    await c.insert(c.task("ts-2", max_attempts=3))
    c.expect(await c.claim("tok") == ["ts-2"], "ts-2 not claimable")
    await c.driver.settle([Outcome("ts-2", Status.FAILED, error="e", started_at=t0 + 7.5)], "tok")
    rec = await c.status("ts-2", Status.FAILED, "after settle FAILED")
    c.near(rec.started_at, t0 + 7.5, "started_at stored from the outcome of a settle")
    c.expect(rec.finished_at is None, f"a FAILED task (to retry) has finished_at {rec.finished_at}")
    c.clock.advance(1.0)
    c.expect(await c.claim("tok") == ["ts-2"], "ts-2 not claimable again")
    await c.driver.start(["ts-2"], "tok")
    rec = await c.get("ts-2")
    c.near(rec.started_at, t0 + 8.0, "started_at of the latest attempt")


async def claim_worker(c: _Ctx) -> None:
    """A claim stores the name of the claiming worker (None when it gives none)."""
    await c.insert(c.task("wk-1", max_attempts=3), c.task("wk-2"))
    got = await c.driver.claim(c.queue, 1, "tok", 30.0, worker="w-1")
    c.expect([r.worker for r in got] == ["w-1"], f"claim by w-1 returned {got!r}")
    rec = await c.get("wk-1")
    c.expect(rec.worker == "w-1", f"claim by w-1 stored worker {rec.worker!r}")
    await c.driver.settle([Outcome("wk-1", Status.FAILED, error="e")], "tok")
    rec = await c.get("wk-1")
    c.expect(rec.worker == "w-1", f"settle changed the worker to {rec.worker!r}")
    got = await c.driver.claim(c.queue, 1, "tok-2", 30.0, worker="w-2")
    c.expect([r.id for r in got] == ["wk-1"], f"wk-1 not claimable again: {got!r}")
    rec = await c.get("wk-1")
    c.expect(rec.worker == "w-2", f"the latest attempt's worker is {rec.worker!r}, not 'w-2'")
    got = await c.driver.claim(c.queue, 1, "tok-3", 30.0)
    c.expect(
        [(r.id, r.worker) for r in got] == [("wk-2", None)],
        f"a claim with no worker name returned {[(r.id, r.worker) for r in got]}",
    )
    rec = await c.get("wk-2")
    c.expect(rec.worker is None, f"a claim with no worker name stored {rec.worker!r}")


async def replace(c: _Ctx) -> None:
    """``replace`` stores over final tasks (any queue), skips unfinished ones, counts the stored."""
    other = f"{c.queue}-other"
    await c.insert(
        c.task("rp-done"),
        c.task("rp-killed"),
        c.task("rp-run"),
        c.task("rp-failed", max_attempts=2),
    )
    await c.insert(c.task("rp-pend", run_at=c.clock.now + 60.0), c.task("rp-cancel"))
    await c.driver.cancel("rp-cancel")
    await c.insert(c.task("rp-other", queue=other))
    c.expect(len(await c.claim("tok", 10)) == 4, "rp-* not claimable")
    c.expect(await c.claim("tok", 10, queue=other) == ["rp-other"], "rp-other not claimable")
    await c.driver.settle(
        [
            Outcome("rp-done", Status.DONE, result=b'"old"'),
            Outcome("rp-killed", Status.KILLED, error="k"),
            Outcome("rp-failed", Status.FAILED, error="f", delay=60.0),
            Outcome("rp-other", Status.DONE),
        ],
        "tok",
    )
    finals = ["rp-cancel", "rp-done", "rp-killed", "rp-other"]
    kept = {"rp-failed": Status.FAILED, "rp-pend": Status.PENDING, "rp-run": Status.QUEUED}
    fresh = [*finals, *kept, "rp-new"]
    new = [c.task(id, payload=b'"new"', priority=7) for id in fresh]
    n = await c.driver.replace(new)
    c.expect(n == 5, f"replace over 4 final tasks, 3 unfinished and 1 new reported {n}, not 5")
    for id in [*finals, "rp-new"]:
        rec = await c.status(id, Status.PENDING, "after replace (a final task is replaced)")
        c.expect(
            (rec.queue, bytes(rec.payload), rec.priority, rec.attempts) == (c.queue, b'"new"', 7, 0)
            and rec.result is None
            and rec.finished_at is None,
            f"replace stored {id} as {rec!r}",
        )
    for id, st in kept.items():
        rec = await c.status(id, st, "after replace (an unfinished task is kept)")
        c.expect(bytes(rec.payload) != b'"new"', f"replace overwrote unfinished task {id}")
    counts = await c.driver.counts(None)
    total = sum(sum(per.values()) for per in counts.values())
    c.expect(total == 8, f"after replace the store holds {total} tasks, not 8: {counts}")
    left = sum(counts.get(other, {}).values())
    c.expect(left == 0, f"replace left {left} task(s) in {other!r}: {counts.get(other)}")


async def snooze(c: _Ctx) -> None:
    """A PENDING outcome (a snooze) moves run_at, gives the attempt back and counts the snooze."""
    await c.insert(c.task("sn-1", max_attempts=1))
    c.expect(await c.claim("tok") == ["sn-1"], "sn-1 not claimable")
    for n in (1, 2):
        applied = await c.driver.settle([Outcome("sn-1", Status.PENDING, delay=10.0)], "tok")
        c.expect(list(applied) == ["sn-1"], f"a settle PENDING (snooze) applied {applied}")
        rec = await c.status("sn-1", Status.PENDING, "after a snooze")
        c.expect(rec.attempts == 0, f"a snooze left attempts={rec.attempts}, expected 0")
        c.expect(rec.snoozes == n, f"after {n} snooze(s) snoozes={rec.snoozes}")
        c.near(rec.run_at, c.clock.now + 10.0, "run_at after a snooze of 10 s")
        c.leased(rec, None, "after a snooze")
        c.expect(rec.finished_at is None, f"a snoozed task has finished_at {rec.finished_at}")
        c.near(await c.driver.next_run_at(c.queue), c.clock.now + 10.0, "next_run_at (snooze)")
        c.clock.advance(9.75)
        c.expect(await c.claim("tok") == [], "a task snoozed 10 s was claimable after 9.75 s")
        c.clock.advance(0.25)
        got = await c.driver.claim(c.queue, 10, "tok", 30.0)
        c.expect([r.id for r in got] == ["sn-1"], "a snoozed task was not claimable in time")
        c.expect(
            got[0].attempts == 1, f"a snoozed task was claimed with attempts={got[0].attempts}"
        )
    await c.driver.settle([Outcome("sn-1", Status.FAILED, error="e")], "tok")
    rec = await c.status("sn-1", Status.KILLED, "after its one attempt failed (snoozes spent none)")
    c.expect(rec.snoozes == 2, f"snoozes is {rec.snoozes} after the final settle, expected 2")


async def progress(c: _Ctx) -> None:
    """Progress (JSON text) is stored by extend for held leases and by settle, and read back."""
    await c.insert(c.task("pg-1", max_attempts=3), c.task("pg-2"))
    c.expect(await c.claim("tok", 10) == ["pg-1", "pg-2"], "pg-1, pg-2 not claimable")
    await c.driver.start(["pg-1", "pg-2"], "tok")
    first = '{"done":1,"of":3,"note":"h\\u00e9"}'
    ext = await c.driver.extend(["pg-1", "pg-2"], "tok", 30.0, {"pg-1": first})
    c.expect(sorted(ext.held) == ["pg-1", "pg-2"], f"extend with progress kept {ext.held}")
    rec = await c.get("pg-1")
    _same_json(c, rec.progress, first, "extend")
    rec = await c.get("pg-2")
    c.expect(rec.progress is None, f"extend stored progress {rec.progress!r} for pg-2 (none sent)")
    ext = await c.driver.extend(["pg-2"], "tok-stale", 30.0, {"pg-2": "[9]"})
    c.expect(ext.held == [], f"a stale extend kept {ext.held}")
    rec = await c.get("pg-2")
    c.expect(rec.progress is None, f"a stale extend stored progress {rec.progress!r}")
    await c.driver.settle(
        [Outcome("pg-1", Status.FAILED, error="e"), Outcome("pg-2", Status.DONE, progress="[3,3]")],
        "tok",
    )
    rec = await c.get("pg-1")
    _same_json(c, rec.progress, first, "a settle with no progress, after extend")
    rec = await c.get("pg-2")
    _same_json(c, rec.progress, "[3,3]", "settle")
    task = await c.backend.get_task("pg-1")
    want = {"done": 1, "of": 3, "note": "hé"}
    c.expect(task is not None and task.progress == want, "get_task did not decode the progress")


def _same_json(c: _Ctx, got: str | None, sent: str, by: str) -> None:
    try:
        same = got is not None and json.loads(got) == json.loads(sent)
    except ValueError:
        same = False
    c.expect(same, f"progress stored by {by} is {got!r}, sent {sent!r}")


async def pause(c: _Ctx) -> None:
    """A paused queue gives nothing to claims (others do) until resumed; running tasks settle."""
    other = f"{c.queue}-other"
    await c.insert(c.task("pa-1"), c.task("pa-2"), c.task("pa-3"), c.task("pa-9", queue=other))
    c.expect(await c.claim("tok", 1) == ["pa-1"], "pa-1 not claimable")
    await c.driver.pause(c.queue)
    await c.driver.pause(c.queue)
    got = await c.driver.paused()
    c.expect(list(got) == [c.queue], f"paused() is {got} after pause({c.queue!r})")
    c.expect(await c.claim("tok", 10) == [], "a claim on a paused queue gave tasks")
    c.expect(await c.claim("tok", 10, queue=other) == ["pa-9"], "pause stopped another queue")
    applied = await c.driver.settle([Outcome("pa-1", Status.DONE)], "tok")
    c.expect(list(applied) == ["pa-1"], f"a settle on a paused queue applied {applied}")
    await c.driver.pause(other)
    got = await c.driver.paused()
    c.expect(list(got) == sorted([c.queue, other]), f"paused() is {got}, expected both, sorted")
    await c.driver.resume(c.queue)
    got = await c.driver.paused()
    c.expect(list(got) == [other], f"paused() is {got} after resume({c.queue!r})")
    c.expect(
        await c.claim("tok", 10) == ["pa-2", "pa-3"], "resume did not make pa-2, pa-3 claimable"
    )
    await c.driver.resume(other)
    await c.driver.resume(other)
    c.expect(list(await c.driver.paused()) == [], "paused() not empty after both resumed")
