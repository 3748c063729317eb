"""Conformance checks of workflows: the atomic transition, the fan-in, the end rule.

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
