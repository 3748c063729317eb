"""``check_backend``: the conformance checks every storage driver must pass.

Each check opens a fresh backend through the caller's factory, drives its
``Driver`` (directly, with tokens of its own, and through ``open_consumer``)
on a clock it moves by hand, and names the promise it holds the driver to.
The checks of a task's life beyond its status sit in ``_check_lifecycle``,
cancellation and the change and cancel signals in ``_check_cancel``,
administration in ``_check_admin``, stored texts in ``_check_texts``, workflows
in ``_check_flows``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from .._driver import Outcome
from .._task import Status
from ._check_admin import (
    admin,
    admin_retry,
    bulk_writes,
    counts_agree,
    counts_every_path,
    get_many,
    prune,
    purge,
    retention_rules,
    workers_registry,
)
from ._check_cancel import (
    cancel,
    cancel_flagged,
    cancel_release_rescue,
    signal_cancel,
    signal_change,
)
from ._check_flows import (
    flow_end_rule,
    flow_fan_in,
    flow_live_nodes_kept,
    flow_resume,
    flow_run_cancel,
    flow_run_cancel_many,
    flow_transition,
)
from ._check_lifecycle import claim_worker, pause, progress, replace, snooze, timestamps
from ._check_schedules import schedules_forget, schedules_record
from ._check_texts import failure_texts, store_wide_ids
from ._context import BackendFactory, Check, ManualClock, _Ctx

__all__ = ["CHECK_NAMES", "check_backend"]

log = logging.getLogger("trioqueue.testing")


async def _round_trip(c: _Ctx) -> None:
    args = {"n": 1, "text": "héllo", "items": [1, 2.5, None, True]}
    tid = await c.backend.push(args, priority=3, max_attempts=4, meta={"k": "v", "n": [1, 2]})
    rec = await c.status(tid, Status.PENDING, "after push")
    c.expect(rec.queue == c.queue, f"task {tid} stored in queue {rec.queue!r}, not {c.queue!r}")
    c.expect(rec.priority == 3, f"priority 3 came back as {rec.priority!r}")
    c.expect(rec.max_attempts == 4, f"max_attempts 4 came back as {rec.max_attempts!r}")
    c.expect(rec.attempts == 0, f"a new task has attempts={rec.attempts}, expected 0")
    c.expect(rec.meta == {"k": "v", "n": [1, 2]}, f"meta came back as {rec.meta!r}")
    c.near(rec.run_at, c.clock.now, f"run_at of task {tid} pushed with no delay")
    payload = c.backend.codec.encode(args)
    c.expect(bytes(rec.payload) == payload, f"payload came back as {rec.payload!r}")
    got = await c.driver.claim(c.queue, 5, "tok-a", 30.0)
    c.expect([r.id for r in got] == [tid], f"claim returned {[r.id for r in got]}, not [{tid}]")
    r = got[0]
    c.expect(r.status is Status.QUEUED, f"a claimed task is {r.status.value}, expected queued")
    c.expect(r.attempts == 1, f"a first claim returned attempts={r.attempts}, expected 1")
    c.expect(bytes(r.payload) == payload, "claim returned a different payload than was pushed")
    c.expect(r.meta == {"k": "v", "n": [1, 2]}, f"claim returned meta {r.meta!r}")
    c.expect(r.priority == 3 and r.max_attempts == 4, "claim lost priority or max_attempts")
    c.leased(r, "tok-a", "in the claim's return value")
    c.near(r.lease_expires_at, c.clock.now + 30.0, "lease expiry of a 30 s claim")
    await c.driver.start([tid], "tok-a")
    rec = await c.status(tid, Status.RUNNING, "after start")
    c.expect(rec.attempts == 1, f"start changed attempts to {rec.attempts}")
    c.clock.advance(2.0)
    result = c.backend.codec.encode({"ok": True})
    applied = await c.driver.settle([Outcome(tid, Status.DONE, result=result)], "tok-a")
    c.expect(list(applied) == [tid], f"settle DONE by the lease holder applied {applied}")
    rec = await c.status(tid, Status.DONE, "after settle DONE")
    c.expect(rec.result is not None and bytes(rec.result) == result, "the result was not stored")
    c.leased(rec, None, "after settle")
    c.near(rec.finished_at, c.clock.now, f"finished_at of task {tid}")
    task = await c.backend.get_task(tid)
    c.expect(task is not None and task.args == args, "get_task did not decode the args")
    c.expect(task is not None and task.result == {"ok": True}, "get_task did not decode result")


async def _shutdown_release(c: _Ctx) -> None:
    ids = [await c.backend.push({"i": i}, id=f"sr-{i}") for i in range(3)]
    async with c.backend.open_consumer(concurrency=1, prefetch=3, lease_seconds=60.0) as con:
        with trio.fail_after(10):
            first = await con.receive()
        c.expect(first.id in ids, f"the consumer received unknown task {first.id}")
    await _all_released(c, ids, "shutdown did not release prefetched task", "the consumer closed")


async def _all_released(c: _Ctx, ids: Sequence[str], failed: str, after: str) -> None:
    # Each of ``ids`` PENDING, unleased, its attempt uncounted, claimable at once.
    for id in ids:
        rec = await c.get(id)
        c.expect(
            rec.status is Status.PENDING,
            f"{failed} {id}: it is {rec.status.value}, expected pending",
        )
        c.leased(rec, None, f"after {after}")
        c.expect(rec.attempts == 0, f"released task {id} kept attempts={rec.attempts}")
    again = await c.claim("tok-b", 10)
    c.expect(sorted(again) == sorted(ids), f"released tasks not claimable at once: {again}")


async def _outer_cancel(c: _Ctx) -> None:
    # A consumer cancelled from outside (an outer deadline, as a
    # ``move_on_after`` around a worker gives) closes as at a shutdown: the
    # task started and the ones still prefetched are all given back.
    ids = [await c.backend.push({"i": i}, id=f"oc-{i}") for i in range(3)]
    with trio.CancelScope() as outer:
        async with c.backend.open_consumer(concurrency=1, prefetch=3, lease_seconds=60.0) as con:
            with trio.fail_after(10):
                first = await con.receive()
            con.started(first.id)
            outer.deadline = trio.current_time()
            await trio.sleep_forever()
    c.expect(outer.cancelled_caught, "the outer deadline did not cancel the consumer")
    await _all_released(
        c,
        ids,
        "a consumer cancelled from outside did not release task",
        "the consumer was cancelled from outside",
    )


async def _order(c: _Ctx) -> None:
    now = c.clock.now
    await c.insert(
        c.task("o-a", priority=0, run_at=now - 5),
        c.task("o-b", priority=5, run_at=now - 1),
        c.task("o-c", priority=5, run_at=now - 3),
        c.task("o-d", priority=-2, run_at=now - 9),
        c.task("o-e", priority=0, run_at=now - 5),
        c.task("o-f", priority=9, run_at=now + 1),
    )
    want = ["o-c", "o-b", "o-a", "o-e", "o-d"]
    first = await c.claim("tok", 2)
    c.expect(first == want[:2], f"claim(limit=2) returned {first}, expected {want[:2]}")
    rest = await c.claim("tok", 10)
    c.expect(
        rest == want[2:],
        f"claim order is not priority then run_at then id: got {rest}, expected {want[2:]}",
    )
    nxt = await c.driver.next_run_at(c.queue)
    c.near(nxt, now + 1, "next_run_at with one delayed task")
    await c.insert(c.task("o-g", priority=7, run_at=now - 2), c.task("o-h", run_at=now - 4))
    nxt = await c.driver.next_run_at(c.queue)
    c.near(nxt, now - 4, "next_run_at (the earliest run_at, whatever the priority)")


async def _run_at(c: _Ctx) -> None:
    tid = await c.backend.push("later", delay=10.0)
    nxt = await c.driver.next_run_at(c.queue)
    c.near(nxt, c.clock.now + 10.0, "next_run_at of a task delayed 10 s")
    c.clock.advance(9.75)
    got = await c.claim("tok")
    c.expect(got == [], f"task {tid} delayed 10 s was claimed after 9.75 s")
    c.clock.advance(0.25)
    got = await c.claim("tok")
    c.expect(got == [tid], f"task {tid} not claimable once its run_at passed (got {got})")


async def _lease_expiry(c: _Ctx) -> None:
    await c.insert(c.task("le-1", max_attempts=5))
    c.expect(await c.claim("tok-a", lease=5.0) == ["le-1"], "le-1 not claimable")
    c.clock.advance(4.5)
    n = await c.driver.rescue(c.queue)
    c.expect(n == 0, f"rescue took {n} task(s) whose lease had 0.5 s left")
    c.expect(await c.claim("tok-b") == [], "a task under a live lease was claimed by another")
    kept = (await c.driver.extend(["le-1"], "tok-a", 5.0)).held
    c.expect(list(kept) == ["le-1"], f"extend by the holder returned {kept}")
    rec = await c.get("le-1")
    c.near(rec.lease_expires_at, c.clock.now + 5.0, "lease expiry after extend")
    c.clock.advance(4.5)
    c.expect(await c.driver.rescue(c.queue) == 0, "rescue ignored an extended lease")
    c.clock.advance(0.5)
    n = await c.driver.rescue(c.queue)
    c.expect(n == 1, f"rescue of one expired lease returned {n}")
    rec = await c.status("le-1", Status.FAILED, "after its lease expired and was rescued")
    c.expect(rec.attempts == 1, f"rescue changed attempts to {rec.attempts}, expected 1")
    c.leased(rec, None, "after rescue")
    c.expect(rec.last_error is not None, "rescue left no last_error")
    c.near(rec.run_at, c.clock.now, "run_at of a rescued task")
    got = await c.driver.claim(c.queue, 10, "tok-b", 5.0)
    c.expect([r.id for r in got] == ["le-1"], "a rescued task was not claimable by another")
    c.expect(got[0].attempts == 2, f"re-claim after rescue gave attempts={got[0].attempts}")


async def _compare_and_set(c: _Ctx) -> None:
    await c.insert(c.task("cas-1"))
    await c.claim("tok-old", lease=5.0)
    await c.driver.start(["cas-1"], "tok-old")
    c.clock.advance(6.0)
    await c.driver.rescue(c.queue)
    c.expect(await c.claim("tok-new", lease=30.0) == ["cas-1"], "cas-1 not re-claimable")
    stale = await c.driver.settle([Outcome("cas-1", Status.DONE, result=b'"old"')], "tok-old")
    rec = await c.get("cas-1")
    if rec.status is not Status.QUEUED or rec.result is not None:
        raise c.fail(
            f"settle with a stale token overwrote the outcome of task cas-1 "
            f"(now {rec.status.value}, result {rec.result!r})"
        )
    c.expect(list(stale) == [], f"settle with a stale token reported {stale} as applied")
    c.leased(rec, "tok-new", "after a stale settle")
    stale_ext = await c.driver.extend(["cas-1"], "tok-old", 99.0)
    c.expect(stale_ext.held == [], "stale extend applied")
    c.expect(await c.driver.release(["cas-1"], "tok-old") == 0, "stale release applied")
    await c.driver.start(["cas-1"], "tok-old")
    await c.status("cas-1", Status.QUEUED, "after start with a stale token")
    applied = await c.driver.settle([Outcome("cas-1", Status.DONE, result=b'"new"')], "tok-new")
    c.expect(list(applied) == ["cas-1"], f"the new holder's settle applied {applied}")
    late = await c.driver.settle([Outcome("cas-1", Status.FAILED, error="late")], "tok-old")
    rec = await c.status("cas-1", Status.DONE, "after a late settle with a stale token")
    c.expect(list(late) == [], f"a stale settle after DONE reported {late} as applied")
    c.expect(
        rec.result is not None and bytes(rec.result) == b'"new"',
        f"the new holder's outcome did not win: result {rec.result!r}",
    )
    again = await c.driver.settle([Outcome("cas-1", Status.FAILED, error="x")], "tok-new")
    c.expect(list(again) == [], "a second settle of a finished task was applied")


async def _max_attempts(c: _Ctx) -> None:
    await c.insert(c.task("ma-1", max_attempts=2), c.task("ma-2", max_attempts=1))
    await c.claim("tok", 1)
    applied = await c.driver.settle([Outcome("ma-1", Status.FAILED, error="e1")], "tok")
    c.expect(list(applied) == ["ma-1"], "settle FAILED was not applied")
    rec = await c.status("ma-1", Status.FAILED, "after attempt 1 of 2 failed")
    c.expect(rec.last_error == "e1", f"last_error is {rec.last_error!r}, expected 'e1'")
    got = await c.claim("tok", 1)
    c.expect(got == ["ma-1"], f"a FAILED task with delay 0 was not claimable at once ({got})")
    await c.driver.settle([Outcome("ma-1", Status.FAILED, error="e2")], "tok")
    rec = await c.status("ma-1", Status.KILLED, "after its last attempt (2 of 2) failed")
    c.expect(rec.attempts == 2, f"attempts is {rec.attempts}, expected 2")
    c.expect(rec.last_error == "e2", f"last_error is {rec.last_error!r}, expected 'e2'")
    c.expect(rec.finished_at is not None, "a KILLED task has no finished_at")
    c.expect(await c.claim("tok") == ["ma-2"], "ma-2 not claimable")
    c.clock.advance(31.0)
    c.expect(await c.driver.rescue(None) == 1, "rescue(None) missed an expired lease")
    rec = await c.status("ma-2", Status.KILLED, "after its only attempt's lease expired")
    c.leased(rec, None, "after rescue killed it")
    c.expect(rec.finished_at is not None, "a task KILLED by rescue has no finished_at")
    c.expect(bool(rec.last_error), "a task KILLED by rescue has no last_error")
    c.expect(await c.claim("tok") == [], "a KILLED task was claimable")


async def _retry_delay(c: _Ctx) -> None:
    await c.insert(c.task("rd-1"))
    await c.claim("tok")
    await c.driver.settle([Outcome("rd-1", Status.FAILED, error="boom", delay=30.0)], "tok")
    rec = await c.status("rd-1", Status.FAILED, "after a failed attempt with a delay")
    c.near(rec.run_at, c.clock.now + 30.0, "run_at of a retry delayed 30 s")
    c.near(await c.driver.next_run_at(c.queue), c.clock.now + 30.0, "next_run_at of a retry")
    c.clock.advance(29.75)
    c.expect(await c.claim("tok") == [], "a retry delayed 30 s was claimable after 29.75 s")
    c.clock.advance(0.25)
    c.expect(await c.claim("tok") == ["rd-1"], "a retry was not claimable after its delay")


async def _release(c: _Ctx) -> None:
    await c.insert(c.task("rl-1"), c.task("rl-2"))
    c.expect(await c.claim("tok-a", 10) == ["rl-1", "rl-2"], "rl-1, rl-2 not claimable")
    await c.driver.start(["rl-2"], "tok-a")
    n = await c.driver.release(["rl-1", "rl-2"], "tok-a")
    c.expect(n == 2, f"release of a queued and a running task returned {n}")
    for id in ("rl-1", "rl-2"):
        rec = await c.status(id, Status.PENDING, "after release")
        c.expect(rec.attempts == 0, f"release did not uncount the attempt of {id}")
        c.leased(rec, None, "after release")
    got = await c.claim("tok-b", 10)
    c.expect(got == ["rl-1", "rl-2"], f"released tasks not claimable at once by another: {got}")


async def _settle_kinds(c: _Ctx) -> None:
    await c.insert(c.task("sk-1"), c.task("sk-2"))
    await c.claim("tok", 10)
    applied = await c.driver.settle(
        [
            Outcome("sk-1", Status.KILLED, error="aborted: no"),
            Outcome("sk-2", Status.CANCELLED, error="stop"),
        ],
        "tok",
    )
    c.expect(sorted(applied) == ["sk-1", "sk-2"], f"a batch settle applied {applied}")
    rec = await c.status("sk-1", Status.KILLED, "after settle KILLED")
    c.expect(rec.last_error == "aborted: no", f"KILLED stored error {rec.last_error!r}")
    rec = await c.status("sk-2", Status.CANCELLED, "after settle CANCELLED")
    c.expect(rec.finished_at is not None, "a CANCELLED task has no finished_at")


async def _idempotent(c: _Ctx) -> None:
    tid = await c.backend.push({"v": 1}, id="same")
    again = await c.backend.push({"v": 2}, id="same")
    c.expect(tid == again == "same", f"push with id='same' returned {tid!r}, {again!r}")
    rec = await c.get("same")
    c.expect(
        bytes(rec.payload) == c.backend.codec.encode({"v": 1}),
        "a second push with the same id replaced the payload",
    )
    n = await c.driver.insert([c.task("same")])
    c.expect(n == 0, f"insert of an existing id reported {n} stored")
    await c.claim("tok")
    await c.driver.settle([Outcome("same", Status.DONE)], "tok")
    await c.backend.push({"v": 3}, id="same")
    await c.status("same", Status.DONE, "after a push with the id of a finished task")
    counts = await c.driver.counts(c.queue)
    total = sum(counts.get(c.queue, {}).values())
    c.expect(total == 1, f"three pushes with one id left {total} tasks")


async def _queues(c: _Ctx) -> None:
    qa, qb = c.queue, c.queue + "-b"
    await c.insert(c.task("qa-1", queue=qa), c.task("qb-1", queue=qb))
    c.expect(await c.claim("tok", 10, queue=qb, lease=5) == ["qb-1"], "claim crossed queues")
    c.expect(await c.claim("tok", 10, queue=qa, lease=5) == ["qa-1"], "claim crossed queues")
    c.clock.advance(6)
    n = await c.driver.rescue(qa)
    c.expect(n == 1, f"rescue({qa!r}) returned {n}, expected 1")
    await c.status("qb-1", Status.QUEUED, "after a rescue of another queue")
    c.expect(await c.driver.rescue(None) == 1, "rescue(None) did not take the other queue")
    await c.status("qb-1", Status.FAILED, "after rescue(None)")


CHECKS: Sequence[tuple[str, Check]] = (
    ("push.round_trip", _round_trip),
    ("shutdown.release", _shutdown_release),
    ("shutdown.outer_cancel", _outer_cancel),
    ("claim.order", _order),
    ("claim.run_at", _run_at),
    ("lease.expiry", _lease_expiry),
    ("lease.compare_and_set", _compare_and_set),
    ("attempts.max_attempts", _max_attempts),
    ("retry.delay", _retry_delay),
    ("release.uncounts", _release),
    ("settle.kinds", _settle_kinds),
    ("settle.failure_texts", failure_texts),
    ("cancel", cancel),
    ("admin.counts_and_list", admin),
    ("admin.counts_every_path", counts_every_path),
    ("admin.retry", admin_retry),
    ("admin.purge", purge),
    ("push.idempotent", _idempotent),
    ("push.store_wide_ids", store_wide_ids),
    ("queues", _queues),
    ("task.timestamps", timestamps),
    ("claim.worker", claim_worker),
    ("push.replace", replace),
    ("admin.get_many", get_many),
    ("cancel.flagged", cancel_flagged),
    ("cancel.release_and_rescue", cancel_release_rescue),
    ("settle.snooze", snooze),
    ("progress", progress),
    ("admin.prune", prune),
    ("admin.retention", retention_rules),
    ("admin.bulk_writes", bulk_writes),
    ("queues.pause", pause),
    ("workers.registry", workers_registry),
    ("signal.change", signal_change),
    ("signal.cancel", signal_cancel),
    ("schedules.record", schedules_record),
    ("schedules.forget", schedules_forget),
    ("flow.transition", flow_transition),
    ("flow.fan_in", flow_fan_in),
    ("flow.end_rule", flow_end_rule),
    ("flow.run_cancel", flow_run_cancel),
    ("flow.resume", flow_resume),
    ("flow.live_nodes_kept", flow_live_nodes_kept),
    ("flow.run_cancel_many", flow_run_cancel_many),
)


async def check_backend(
    open_backend: BackendFactory, *, only: Sequence[str] | None = None, queue: str = "conformance"
) -> None:
    """Run the conformance checks of the storage-driver contract on a backend.

    Each check calls ``open_backend(queue=..., clock=...)`` for a fresh, empty
    backend, moves the given clock by hand (no sleeping), and drives the
    backend's driver directly and through ``open_consumer``. The signal checks
    (``signal.change``, ``signal.cancel``) also read Trio's clock: a
    ``wait_for_change`` or ``wait_for_cancel`` given a minute must return
    within half a second of a change made by another task (run them on a
    real clock, as pytest-trio does by default). After every check, whatever
    it left in the store, ``counts`` must agree with the tasks ``list_tasks``
    gives by status, in every queue.

    Args:
      open_backend: A factory; ``open_backend(queue=q, clock=c)`` returns an
        async context manager yielding a fresh, empty ``trioqueue.Backend``
        whose driver reads the time from ``c()`` (POSIX seconds).
      only: Names of the checks to run (default: all, see ``CHECK_NAMES``).
      queue: The queue name the checks use.

    Raises:
      AssertionError: on the first broken promise; the message starts with the
        check's name in brackets, e.g. ``[lease.compare_and_set] ...``.
      ValueError: if ``only`` names an unknown check.
    """
    names = {n for n, _ in CHECKS}
    if only is not None:
        unknown = sorted(set(only) - names)
        if unknown:
            raise ValueError(f"unknown checks {unknown}; known: {sorted(names)}")
    for name, check in CHECKS:
        if only is not None and name not in only:
            continue
        clock = ManualClock()
        log.debug("conformance check %s", name)
        failure: AssertionError | None = None
        async with open_backend(queue=queue, clock=clock) as backend:
            try:
                ctx = _Ctx(name, clock, backend)
                await check(ctx)
                await counts_agree(ctx)
            except AssertionError as exc:
                failure = exc  # raised once the backend closed, not inside its nursery
        if failure is not None:
            raise failure


#: The names of the checks ``check_backend`` runs, in order.
CHECK_NAMES: tuple[str, ...] = tuple(n for n, _ in CHECKS)
