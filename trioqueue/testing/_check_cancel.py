"""Conformance checks of cancellation: at once, by flag, and the signals that carry it.

A PENDING or FAILED task is cancelled at once; a QUEUED or RUNNING one is
flagged, the flag reaches its holder through ``extend`` (and sooner through
``wait_for_cancel``), and whatever ends the attempt (settle, release, rescue)
ends the task CANCELLED. The two signal checks run on Trio's clock, not the
hand-moved one: a wait must return because of a change, long before its
``max_wait``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio
import trio.testing

from .._driver import CANCEL_REQUESTED, Outcome
from .._task import Status
from ._context import _Ctx

__all__ = ["cancel", "cancel_flagged", "cancel_release_rescue", "signal_cancel", "signal_change"]

#: The ``max_wait`` a signal check passes: a wait that lasts it has missed the change.
LONG_WAIT = 60.0
#: How long a signal check gives the wait to return after each change it makes.
ROUND = 0.5
#: How many changes a signal check makes before it gives up (a wait that is still
#: setting up when the first change comes gets a second chance).
ROUNDS = 6
#: How many times in a row a wait may return with nothing changed before the
#: check calls it a wait that never waits (spurious returns are allowed, a few).
SPURIOUS = 3


async def cancel(c: _Ctx) -> None:
    """PENDING and FAILED tasks are cancelled at once; final and unknown ones are refused."""
    await c.insert(c.task("ca-1"), c.task("ca-2"), c.task("ca-3", run_at=c.clock.now + 5))
    c.clock.advance(1.0)
    c.expect(await c.driver.cancel("ca-3"), "cancel of a PENDING (delayed) task refused")
    rec = await c.status("ca-3", Status.CANCELLED, "after cancel of a PENDING task")
    c.near(rec.finished_at, c.clock.now, "finished_at of a task cancelled while PENDING")
    c.expect(await c.claim("tok", 1) == ["ca-1"], "ca-1 not claimable")
    await c.driver.settle([Outcome("ca-1", Status.FAILED, error="x", delay=60)], "tok")
    c.expect(await c.driver.cancel("ca-1"), "cancel of a FAILED task refused")
    rec = await c.status("ca-1", Status.CANCELLED, "after cancel of a FAILED task")
    c.expect(rec.finished_at is not None, "a cancelled task has no finished_at")
    c.expect(not await c.driver.cancel("ca-1"), "cancel of a CANCELLED task was accepted")
    c.expect(not await c.driver.cancel("nope"), "cancel of a missing task returned True")
    await c.insert(c.task("ca-4", priority=9), c.task("ca-5", priority=8, max_attempts=1))
    c.expect(await c.claim("tok", 2) == ["ca-4", "ca-5"], "ca-4, ca-5 not claimable")
    await c.driver.settle([Outcome("ca-4", Status.DONE)], "tok")
    c.expect(not await c.driver.cancel("ca-4"), "cancel of a DONE task was accepted")
    await c.driver.settle([Outcome("ca-5", Status.FAILED, error="x")], "tok")
    await c.status("ca-5", Status.KILLED, "after its only attempt failed")
    c.expect(not await c.driver.cancel("ca-5"), "cancel of a KILLED task was accepted")
    await c.status("ca-4", Status.DONE, "after a refused cancel")
    c.clock.advance(100)
    c.expect(await c.claim("tok", 10) == ["ca-2"], "a cancelled task was claimable")


async def cancel_flagged(c: _Ctx) -> None:
    """A QUEUED or RUNNING task is flagged; extend reports it; any settle ends it CANCELLED."""
    ids = ["cf-1", "cf-2", "cf-3", "cf-4"]
    await c.insert(*(c.task(id) for id in ids))
    c.expect(await c.claim("tok", 10) == ids, f"{ids} not claimable")
    await c.driver.start(["cf-2"], "tok")
    for id, st in (("cf-1", Status.QUEUED), ("cf-2", Status.RUNNING), ("cf-3", Status.QUEUED)):
        c.expect(await c.driver.cancel(id), f"cancel of a {st.value.upper()} task refused")
        rec = await c.status(id, st, "after its cancellation was requested")
        c.expect(rec.cancel_requested, f"cancel of {st.value} task {id} set no cancel_requested")
        c.leased(rec, "tok", "after its cancellation was requested")
    c.expect(await c.driver.cancel("cf-1"), "a second cancel of a flagged task was refused")
    ext = await c.driver.extend(ids, "tok", 30.0)
    c.expect(sorted(ext.held) == ids, f"extend of flagged leases kept {sorted(ext.held)}")
    c.expect(
        sorted(ext.cancel) == ids[:3],
        f"extend reported {sorted(ext.cancel)} to cancel, expected {ids[:3]}",
    )
    stale = await c.driver.extend(ids, "tok-other", 30.0)
    c.expect(stale.cancel == [], f"an extend by a stale token reported {stale.cancel} to cancel")
    c.clock.advance(2.0)
    applied = await c.driver.settle(
        [
            Outcome("cf-1", Status.DONE, result=b'"r"'),
            Outcome("cf-2", Status.FAILED, error="ValueError: x", delay=0.0),
            Outcome("cf-3", Status.PENDING, delay=0.0),
            Outcome("cf-4", Status.DONE, result=b'"r4"'),
        ],
        "tok",
    )
    c.expect(sorted(applied) == ids, f"the settle of flagged tasks applied {sorted(applied)}")
    for id, kind, error in (
        ("cf-1", "DONE", CANCEL_REQUESTED),
        ("cf-2", "FAILED", "ValueError: x"),
        ("cf-3", "PENDING (a snooze)", CANCEL_REQUESTED),
    ):
        rec = await c.status(id, Status.CANCELLED, f"after a settle {kind} of a flagged task")
        c.near(rec.finished_at, c.clock.now, f"finished_at of flagged task {id} settled {kind}")
        c.leased(rec, None, f"after a settle {kind} of a flagged task")
        c.expect(
            rec.last_error == error,
            f"flagged task {id} settled {kind} has last_error {rec.last_error!r}, "
            f"expected {error!r}",
        )
    rec = await c.get("cf-1")
    c.expect(rec.result is None, f"a flagged task settled DONE stored result {rec.result!r}")
    await c.status("cf-4", Status.DONE, "after a settle DONE (it was never flagged)")
    c.clock.advance(100.0)
    c.expect(await c.claim("tok-2", 10) == [], "a flagged task was retried after its settle")


async def cancel_release_rescue(c: _Ctx) -> None:
    """A flagged task given back (release) or found expired (rescue) ends CANCELLED."""
    await c.insert(c.task("cr-1"), c.task("cr-2"), c.task("cr-3"))
    c.expect(await c.claim("tok", 10, lease=5.0) == ["cr-1", "cr-2", "cr-3"], "cr-* claimable")
    await c.driver.start(["cr-2"], "tok")
    c.expect(await c.driver.cancel("cr-1"), "cancel of a QUEUED task refused")
    c.expect(await c.driver.cancel("cr-2"), "cancel of a RUNNING task refused")
    n = await c.driver.release(["cr-1"], "tok")
    c.expect(n == 1, f"release of a flagged task returned {n}")
    rec = await c.status("cr-1", Status.CANCELLED, "after release of a flagged task")
    c.leased(rec, None, "after release of a flagged task")
    c.near(rec.finished_at, c.clock.now, "finished_at of a flagged task released")
    c.clock.advance(6.0)
    n = await c.driver.rescue(c.queue)
    c.expect(n == 2, f"rescue of two expired leases (one flagged) returned {n}")
    rec = await c.status("cr-2", Status.CANCELLED, "after rescue of a flagged task")
    c.leased(rec, None, "after rescue of a flagged task")
    c.near(rec.finished_at, c.clock.now, "finished_at of a flagged task rescued")
    await c.status("cr-3", Status.FAILED, "after rescue (it was never flagged)")
    c.clock.advance(100.0)
    c.expect(await c.claim("tok-2", 10) == ["cr-3"], "only cr-3 may be claimed again")


async def signal_change(c: _Ctx) -> None:
    """``wait_for_change`` returns soon after another task settles or cancels a task."""
    settled = [f"sg-s{i}" for i in range(ROUNDS)]
    waiting = [f"sg-c{i}" for i in range(ROUNDS)]
    await c.insert(*(c.task(id) for id in settled))
    c.expect(await c.claim("tok", ROUNDS, lease=3600.0) == settled, f"{settled} claimable")
    await c.insert(*(c.task(id, run_at=c.clock.now + 3600.0) for id in waiting))

    def settle(id: str) -> Callable[[], Awaitable[object]]:
        return lambda: c.driver.settle([Outcome(id, Status.DONE)], "tok")

    def cancel(id: str) -> Callable[[], Awaitable[object]]:
        return lambda: c.driver.cancel(id)

    await _wakes(c, "wait_for_change", "a settle", c.driver.wait_for_change, settled, settle)
    await _wakes(c, "wait_for_change", "a cancel", c.driver.wait_for_change, waiting, cancel)


async def signal_cancel(c: _Ctx) -> None:
    """``wait_for_cancel`` returns soon after another task requests a leased task's cancel."""
    ids = [f"sc-{i}" for i in range(ROUNDS)]
    await c.insert(*(c.task(id) for id in ids))
    c.expect(await c.claim("tok", ROUNDS, lease=3600.0) == ids, f"{ids} not claimable")

    def cancel(id: str) -> Callable[[], Awaitable[object]]:
        return lambda: c.driver.cancel(id)

    done = await _wakes(c, "wait_for_cancel", "a cancel", c.driver.wait_for_cancel, ids, cancel)
    ext = await c.driver.extend(ids, "tok", 3600.0)
    c.expect(
        sorted(ext.cancel) == done,
        f"after cancels of {done} while leased, extend reported {sorted(ext.cancel)}",
    )


async def _wakes(
    c: _Ctx,
    name: str,
    what: str,
    wait: Callable[[float], Awaitable[None]],
    ids: Sequence[str],
    act: Callable[[str], Callable[[], Awaitable[object]]],
) -> list[str]:
    """Wait in a task of its own while this one changes ``ids`` one by one until it returns.

    The wait must wait (a few spurious returns before any change are waited
    again; one that keeps returning would make its callers poll), and must
    return within ``ROUND`` seconds of one of the changes. Returns the ids changed.
    """
    returned = trio.Event()
    changed: list[str] = []
    spurious = 0

    async def waiter() -> None:
        nonlocal spurious
        while True:
            await wait(LONG_WAIT)
            if changed or spurious == SPURIOUS:
                returned.set()
                return
            spurious += 1

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        never_waits = returned.is_set()
        for id in [] if never_waits else ids:
            changed.append(id)
            await act(id)()
            with trio.move_on_after(ROUND):
                await returned.wait()
            if returned.is_set():
                break
        nursery.cancel_scope.cancel()
    # Raised out here: an AssertionError inside the nursery would come out in a group.
    c.expect(
        not never_waits,
        f"{name}(max_wait={LONG_WAIT}) returned at once {SPURIOUS + 1} times in a row "
        f"with nothing changed: it does not wait",
    )
    c.expect(
        returned.is_set(),
        f"{name}(max_wait={LONG_WAIT}) had not returned {trio.current_time() - t0:.1f} s "
        f"after {what} by another task ({len(changed)} of them, {ROUND} s apart)",
    )
    return sorted(changed)
