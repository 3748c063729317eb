"""Conformance checks of workflows: the atomic transition, the fan-in, the end rule,
the resume of an ended run, and what purge and delete leave of a running one.

A run here is written by hand: a run record (RUNNING, meta ``trioqueue_run``
its own id) and node tasks (meta ``trioqueue_run`` and ``trioqueue_node``),
driven through ``advance``, ``settle`` and ``cancel`` on the hand-moved clock.
"""

from __future__ import annotations

from typing import Any, cast

from .._driver import Outcome, StoredTask
from .._flow._records import (
    META_NODE,
    META_RUN,
    RUN_CANCELLED,
    FlowDriver,
    Join,
    Transition,
    gathered,
    join_payload,
    node_id,
    value_frame,
)
from .._task import Status
from ._context import _Ctx

__all__ = [
    "flow_end_rule",
    "flow_fan_in",
    "flow_live_nodes_kept",
    "flow_resume",
    "flow_run_cancel",
    "flow_run_cancel_many",
    "flow_transition",
]


def _flows(c: _Ctx) -> FlowDriver:
    if not callable(getattr(c.driver, "advance", None)):
        raise c.fail(f"{type(c.driver).__name__} has no `advance`: it cannot run workflows")
    return cast(FlowDriver, c.driver)


def _run(c: _Ctx, run: str) -> StoredTask:
    return c.task(run, status=Status.RUNNING, meta={META_RUN: run})


def _node(c: _Ctx, run: str, name: str, **fields: Any) -> StoredTask:
    return c.task(node_id(run, name), meta={META_RUN: run, META_NODE: name}, **fields)


def _step(id: str, run: str, result: bytes, **fields: Any) -> Transition:
    return Transition(id, Status.DONE, result, run=run, **fields)


async def flow_transition(c: _Ctx) -> None:
    """A node's DONE and its successors are written together, once, under its lease."""
    d = _flows(c)
    a = _node(c, "r1", "a")
    await c.insert(_run(c, "r1"), a)
    c.expect(await c.claim("tok", 5) == [a.id], "the node was not claimable (or the run was)")
    b = _node(c, "r1", "b", payload=value_frame("b", b"41"))
    stray = _step(a.id, "r1", b"1", spawn=[_node(c, "r1", "stray")])
    c.expect(await d.advance([stray], "other") == [], "advance under another's lease applied")
    c.expect(await c.driver.get(node_id("r1", "stray")) is None, "a lost lease created a task")
    c.clock.advance(1.0)
    c.expect(await d.advance([_step(a.id, "r1", b"41", spawn=[b])], "tok") == [a.id], "advance")
    rec = await c.status(a.id, Status.DONE, "after advance")
    c.expect(rec.result is not None and bytes(rec.result) == b"41", "advance lost the result")
    c.near(rec.finished_at, c.clock.now, "finished_at of an advanced node")
    c.leased(rec, None, "after advance")
    new = await c.status(b.id, Status.PENDING, "as the successor advance created")
    c.expect(bytes(new.payload) == bytes(b.payload), f"successor payload {new.payload!r}")
    c.expect(new.meta == b.meta, f"successor meta came back as {new.meta!r}")
    again = _step(a.id, "r1", b"0", spawn=[_node(c, "r1", "twice")])
    c.expect(await d.advance([again], "tok") == [], "a second advance of a settled node applied")
    c.expect(await c.driver.get(node_id("r1", "twice")) is None, "a replayed advance created")
    c.expect(await c.claim("tok", 5) == [b.id], "the successor was not claimable")
    c.clock.advance(1.0)
    await d.advance([_step(b.id, "r1", b"42", finish=True)], "tok")
    run = await c.status("r1", Status.DONE, "after its last node finished it")
    c.expect(run.result is not None and bytes(run.result) == b"42", "the run lost its result")
    c.near(run.finished_at, c.clock.now, "finished_at of a finished run")
    c.expect(await c.backend.wait_result("r1") == 42, "wait_result of a finished run")


async def flow_fan_in(c: _Ctx) -> None:
    """A join is created once, by the arrival of its last input, with the inputs in order."""
    d = _flows(c)
    first, second, third = (_node(c, "r2", n) for n in ("x", "y", "z"))
    await c.insert(_run(c, "r2"), first, second, third)
    c.expect(len(await c.claim("tok", 5)) == 3, "the three nodes were not claimable")
    inputs = [first.id, second.id, third.id]

    def join() -> Join:
        return Join(_node(c, "r2", "j", payload=join_payload("j", False)), inputs)

    j_id = node_id("r2", "j")
    await d.advance([_step(third.id, "r2", b'"z"', joins=[join()])], "tok")
    c.expect(await c.driver.get(j_id) is None, "the join was created with 1 of 3 inputs")
    await d.advance([_step(first.id, "r2", b'"x"', joins=[join()])], "tok")
    c.expect(await c.driver.get(j_id) is None, "the join was created with 2 of 3 inputs")
    await d.advance([_step(second.id, "r2", b'"y"', joins=[join()])], "tok")
    rec = await c.status(j_id, Status.PENDING, "after its last input arrived")
    want = join_payload("j", False) + gathered([b'"x"', b'"y"', b'"z"'])
    c.expect(bytes(rec.payload) == want, f"join payload {rec.payload!r}, expected {want!r}")
    await d.advance([_step(second.id, "r2", b'"y"', joins=[join()])], "tok")
    c.expect(await c.claim("tok", 5) == [j_id], "the join is not claimable exactly once")
    # Two joins fed by one settle, in one call with another node's.
    p, q = _node(c, "r3", "p"), _node(c, "r3", "q")
    await c.insert(_run(c, "r3"), p, q)
    await c.claim("t3", 5)
    j1 = Join(_node(c, "r3", "j1", payload=join_payload("j1", True)), [p.id, q.id])
    j2 = Join(_node(c, "r3", "j2", payload=join_payload("j2", False)), [q.id, p.id])
    j1b = Join(_node(c, "r3", "j1", payload=join_payload("j1", True)), [p.id, q.id])
    j2b = Join(_node(c, "r3", "j2", payload=join_payload("j2", False)), [q.id, p.id])
    steps = [_step(p.id, "r3", b"1", joins=[j1, j2]), _step(q.id, "r3", b"2", joins=[j1b, j2b])]
    c.expect(sorted(await d.advance(steps, "t3")) == sorted([p.id, q.id]), "advance of two")
    for name, order in (("j1", [b"1", b"2"]), ("j2", [b"2", b"1"])):
        rec = await c.get(node_id("r3", name))
        kind = name == "j1"
        c.expect(
            bytes(rec.payload) == join_payload(name, kind) + gathered(order),
            f"join {name} got its inputs as {rec.payload!r}",
        )


async def flow_end_rule(c: _Ctx) -> None:
    """A KILLED node ends its run, cancels the rest, and nothing new is created."""
    d = _flows(c)
    a = _node(c, "r4", "a", max_attempts=1, priority=2)
    b = _node(c, "r4", "b", priority=1)
    later = _node(c, "r4", "later", run_at=c.clock.now + 60)
    await c.insert(_run(c, "r4"), a, b, later)
    c.expect(await c.claim("tok", 2) == [a.id, b.id], "a and b were not claimable")
    c.clock.advance(1.0)
    await c.driver.settle([Outcome(a.id, Status.FAILED, error="E: no")], "tok")
    await c.status(a.id, Status.KILLED, "after its only attempt failed")
    run = await c.status("r4", Status.KILLED, "after its node a was killed")
    want = "node 'a' ended killed: E: no"
    c.expect(run.last_error == want, f"the run's last_error is {run.last_error!r}, not {want!r}")
    c.near(run.finished_at, c.clock.now, "finished_at of a run its node ended")
    await c.status(later.id, Status.CANCELLED, "(PENDING) after its run ended")
    ext = await c.driver.extend([b.id], "tok", 30.0)
    c.expect(ext.cancel == [b.id], f"the running node b was not flagged: extend gave {ext}")
    spawn = [_node(c, "r4", "c")]
    await d.advance([_step(b.id, "r4", b"1", spawn=spawn)], "tok")
    await c.status(b.id, Status.CANCELLED, "(flagged) after its advance")
    c.expect(await c.driver.get(spawn[0].id) is None, "a node was created after its run ended")
    c.expect(not await c.driver.cancel("r4"), "cancel of an ended run was accepted")
    # The rule holds whatever ends the node: here a rescue of its expired lease.
    e = _node(c, "r6", "e", max_attempts=1)
    await c.insert(_run(c, "r6"), e)
    c.expect(await c.claim("t6", 5, lease=10.0) == [e.id], "the node was not claimable")
    c.clock.advance(11.0)
    await c.driver.rescue(c.queue)
    await c.status(e.id, Status.KILLED, "after its only lease expired")
    run = await c.status("r6", Status.KILLED, "after a rescue killed its node")
    want = "node 'e' ended killed: lease expired on attempt 1 of 1"
    c.expect(run.last_error == want, f"the run's last_error is {run.last_error!r}, not {want!r}")


async def flow_run_cancel_many(c: _Ctx) -> None:
    """``cancel_many`` cancels a run among other ids as ``cancel`` does: with its tasks."""
    a, b = _node(c, "r6", "a"), _node(c, "r6", "b", run_at=c.clock.now + 60)
    plain = c.task("r6-plain", run_at=c.clock.now + 60)
    await c.insert(_run(c, "r6"), a, b, plain)
    c.expect(await c.claim("tok", 5) == [a.id], "the node was not claimable")
    n = await c.driver.cancel_many(["r6", plain.id])
    c.expect(n == 2, f"cancel_many of a running run and a PENDING task gave {n}, not 2")
    run = await c.status("r6", Status.CANCELLED, "after cancel_many")
    c.expect(run.last_error == RUN_CANCELLED, f"a cancelled run's last_error {run.last_error!r}")
    await c.status(b.id, Status.CANCELLED, "(PENDING) after its run was cancelled by cancel_many")
    await c.status(plain.id, Status.CANCELLED, "after cancel_many")
    ext = await c.driver.extend([a.id], "tok", 30.0)
    c.expect(ext.cancel == [a.id], f"the running node was not flagged: extend gave {ext}")


async def flow_run_cancel(c: _Ctx) -> None:
    """Cancelling a run ends it at once and cancels its tasks; nothing new is created."""
    d = _flows(c)
    a, b = _node(c, "r5", "a"), _node(c, "r5", "b", run_at=c.clock.now + 60)
    await c.insert(_run(c, "r5"), a, b)
    c.expect(await c.claim("tok", 5) == [a.id], "the node was not claimable")
    c.clock.advance(1.0)
    c.expect(await c.driver.cancel("r5"), "cancel of a running run was refused")
    run = await c.status("r5", Status.CANCELLED, "after cancel")
    c.expect(run.last_error == RUN_CANCELLED, f"a cancelled run's last_error {run.last_error!r}")
    c.near(run.finished_at, c.clock.now, "finished_at of a cancelled run")
    await c.status(b.id, Status.CANCELLED, "(PENDING) after its run was cancelled")
    ext = await c.driver.extend([a.id], "tok", 30.0)
    c.expect(ext.cancel == [a.id], f"the running node was not flagged: extend gave {ext}")
    spawn = [_node(c, "r5", "c")]
    await d.advance([_step(a.id, "r5", b"1", spawn=spawn)], "tok")
    await c.status(a.id, Status.CANCELLED, "(flagged) after its advance")
    c.expect(await c.driver.get(spawn[0].id) is None, "a node was created after a cancel")
    c.expect(not await c.driver.cancel("r5"), "a second cancel of the run was accepted")
    plain = c.task("plain")
    await c.insert(plain)
    c.expect(await c.driver.cancel("plain"), "cancel of a plain PENDING task was refused")


async def flow_resume(c: _Ctx) -> None:
    """A retry of an ended run's node (or of its record) resumes the run; joins still meet."""
    d = _flows(c)
    a, b = _node(c, "r7", "a"), _node(c, "r7", "b", max_attempts=1)
    later = _node(c, "r7", "later", run_at=c.clock.now + 60)
    await c.insert(_run(c, "r7"), a, b, later)
    c.expect(sorted(await c.claim("tok", 5)) == [a.id, b.id], "a and b were not claimable")
    inputs = [a.id, b.id]

    def join() -> Join:
        return Join(_node(c, "r7", "j", payload=join_payload("j", False)), inputs)

    c.clock.advance(1.0)
    await d.advance([_step(a.id, "r7", b'"a"', joins=[join()])], "tok")
    await c.driver.settle([Outcome(b.id, Status.FAILED, error="E: b")], "tok")
    await c.status("r7", Status.KILLED, "after its node b was killed")
    c.expect(not await c.driver.retry(a.id), "retry of a DONE node was accepted")
    c.expect(await c.driver.retry(b.id), "retry of the killed node of a killed run refused")
    run = await c.status("r7", Status.RUNNING, "(its record) after a retry of its killed node")
    c.expect(run.finished_at is None, "a resumed run kept its finished_at")
    rec = await c.status(b.id, Status.PENDING, "(the killed node) after the retry")
    c.expect(rec.max_attempts >= rec.attempts + 1, "the retried node has no attempt left")
    again = await c.status(later.id, Status.PENDING, "(cancelled by the run's end) after resume")
    c.expect(again.run_at >= later.run_at, "a resumed node lost its delay")
    await c.status(a.id, Status.DONE, "(a finished node) after resume")
    c.expect(not await c.driver.retry("r7"), "retry of a RUNNING run record was accepted")
    c.expect(await c.claim("tok2", 5) == [b.id], "the resumed node was not claimable")
    c.clock.advance(1.0)
    await d.advance([_step(b.id, "r7", b'"b"', joins=[join()])], "tok2")
    rec = await c.status(node_id("r7", "j"), Status.PENDING, "(the join) after its inputs ended")
    want = join_payload("j", False) + gathered([b'"a"', b'"b"'])
    c.expect(bytes(rec.payload) == want, f"the resumed run's join got {rec.payload!r}")
    c.expect(await c.claim("tok3", 5) == [rec.id], "the join was not claimable")
    # A run record is never made PENDING: its retry resumes the run, or is refused.
    x = _node(c, "r8", "x")
    await c.insert(_run(c, "r8"), x)
    c.expect(await c.claim("t8", 5) == [x.id], "the node was not claimable")
    c.expect(not await c.driver.retry("r8"), "retry of a RUNNING run record was accepted")
    c.expect(await c.driver.cancel("r8"), "cancel of a running run was refused")
    c.expect(not await c.driver.retry("r8"), "a run was resumed while its node still ran")
    await c.driver.settle([Outcome(x.id, Status.DONE, result=b"1")], "t8")
    await c.status(x.id, Status.CANCELLED, "(flagged) after it settled")
    c.expect(await c.driver.retry("r8"), "retry of a cancelled run record refused")
    await c.status("r8", Status.RUNNING, "(a cancelled run) after a retry of its record")
    await c.status(x.id, Status.PENDING, "(its cancelled node) after the run's retry")
    c.expect(await c.claim("t8b", 5) == [x.id], "a resumed run's node was not claimable")
    lone = c.task("r9", status=Status.KILLED, meta={META_RUN: "r9"})
    await c.insert(lone)
    c.expect(not await c.driver.retry("r9"), "a run with no task to run again was resumed")
    await c.status("r9", Status.KILLED, "(a run record with no node) after a refused retry")
    # A run's id that now holds a plain task is no run: its old node's retry is a plain one.
    y = _node(c, "r11", "y", status=Status.KILLED)
    await c.insert(c.task("r11", status=Status.KILLED), y)
    c.expect(await c.driver.retry(y.id), "retry of a KILLED node whose run is gone refused")
    await c.status(y.id, Status.PENDING, "(a node whose run is gone) after its retry")
    await c.status("r11", Status.KILLED, "(a plain task holding a run's id) after a node's retry")


async def flow_live_nodes_kept(c: _Ctx) -> None:
    """Purge, prune and delete leave the nodes of a RUNNING run; an ended run's go."""
    a, b = _node(c, "r10", "a"), _node(c, "r10", "b", max_attempts=1)
    await c.insert(_run(c, "r10"), a, b)
    c.expect(len(await c.claim("tok", 5)) == 2, "the nodes were not claimable")
    await c.driver.settle([Outcome(a.id, Status.DONE, result=b"1")], "tok")
    c.clock.advance(10.0)
    c.expect(await c.driver.purge(c.clock.now) == 0, "purge deleted a node of a running run")
    every = dict.fromkeys((Status.DONE, Status.KILLED, Status.CANCELLED), c.clock.now)
    n = await c.driver.prune(None, every, 10, 0.0)
    c.expect(n == 0, "prune (retention) deleted a node of a running run")
    delete = getattr(c.driver, "delete", None)  # optional: the board's and CLI's delete
    if delete is not None:
        c.expect(await delete([a.id]) == 0, "delete took a node of a running run")
    await c.status(a.id, Status.DONE, "(a node of a running run) after purge and delete")
    await c.driver.settle([Outcome(b.id, Status.FAILED, error="E: b")], "tok")
    await c.status("r10", Status.KILLED, "after its node was killed")
    c.clock.advance(1.0)
    n = await c.driver.purge(c.clock.now)
    c.expect(n == 3, f"purge of an ended run deleted {n} of its 3 tasks")
