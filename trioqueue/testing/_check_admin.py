"""Conformance checks of inspection and administration: counts, listings, batched reads,
retries, purges, retention (``prune`` and the queues' stored rules) and the workers' registry."""

from __future__ import annotations

from .._driver import Outcome, RetentionRule, WorkerRecord
from .._task import Status
from ._context import _Ctx

#: Ids in one call of a batch write: theirs take over 8000 bytes as JSON.
BIG_PAGE = 800

__all__ = [
    "admin",
    "admin_retry",
    "bulk_writes",
    "counts_agree",
    "counts_every_path",
    "get_many",
    "prune",
    "purge",
    "retention_rules",
    "workers_registry",
]


async def admin(c: _Ctx) -> None:
    """Counts by queue and status, listings paged newest id first, get of a missing id."""
    other = c.queue + "-other"
    await c.insert(*(c.task(f"ad-{i:02d}") for i in range(7)))
    await c.insert(c.task("ad-90", queue=other), c.task("ad-91", queue=other))
    await c.claim("tok", 2)  # ad-00, ad-01 queued
    await c.driver.settle([Outcome("ad-00", Status.DONE)], "tok")
    await c.driver.cancel("ad-02")
    want = {c.queue: {Status.DONE: 1, Status.QUEUED: 1, Status.CANCELLED: 1, Status.PENDING: 4}}
    want_other = {other: {Status.PENDING: 2}}

    def clean(d: dict[str, dict[Status, int]]) -> dict[str, dict[Status, int]]:
        out = {q: {Status(s): n for s, n in per.items() if n} for q, per in d.items()}
        return {q: per for q, per in out.items() if per}

    got = clean(await c.driver.counts(c.queue))
    c.expect(got == want, f"counts({c.queue!r}) is {got}, expected {want}")
    got = clean(await c.driver.counts(None))
    c.expect(got == {**want, **want_other}, f"counts(None) is {got}")
    page1 = await c.driver.list_tasks(queue=c.queue, status=None, limit=3, offset=0)
    page2 = await c.driver.list_tasks(queue=c.queue, status=None, limit=3, offset=3)
    ids = [t.id for t in page1] + [t.id for t in page2]
    want_ids = [f"ad-{i:02d}" for i in range(6, 0, -1)]
    c.expect(ids == want_ids, f"list_tasks pages (newest id first) gave {ids}, not {want_ids}")
    pend = await c.driver.list_tasks(queue=c.queue, status=Status.PENDING, limit=50, offset=0)
    got_ids = [t.id for t in pend]
    c.expect(got_ids == ["ad-06", "ad-05", "ad-04", "ad-03"], f"status filter gave {got_ids}")
    allq = await c.driver.list_tasks(queue=None, status=Status.PENDING, limit=50, offset=0)
    c.expect(len(allq) == 6, f"list_tasks(queue=None, pending) gave {len(allq)} tasks, not 6")
    c.expect(await c.driver.get("missing") is None, "get of a missing id did not return None")


async def counts_agree(c: _Ctx, after: str = "") -> None:
    """``counts(None)`` and ``counts(queue)`` equal the tasks ``list_tasks`` gives by status."""
    listed: dict[str, dict[Status, int]] = {}
    for st in Status:
        for t in await c.driver.list_tasks(queue=None, status=st, limit=100_000, offset=0):
            per = listed.setdefault(t.queue, {})
            per[st] = per.get(st, 0) + 1
    got = {
        q: {st: n for st, n in per.items() if n} for q, per in (await c.driver.counts(None)).items()
    }
    got = {q: per for q, per in got.items() if per}
    c.expect(got == listed, f"counts(None) {after}is {got}, but the listed tasks are {listed}")
    for q, want in listed.items():
        one = {st: n for st, n in (await c.driver.counts(q)).get(q, {}).items() if n}
        c.expect(one == want, f"counts({q!r}) {after}is {one}, but its listed tasks are {want}")


async def counts_every_path(c: _Ctx) -> None:
    """Counts stay exact through every change into or out of a final status, in two queues."""
    other = c.queue + "-other"
    now = c.clock.now
    await c.insert(
        *(c.task(f"ce-{i}", max_attempts=1 if i in (1, 5) else 25) for i in range(8)),
        c.task("ce-b", queue=other),
        c.task("ce-f1", status=Status.DONE, finished_at=now),
        c.task("ce-f2", queue=other, status=Status.KILLED, finished_at=now),
    )
    await counts_agree(c, "after inserting pending and final tasks ")
    got = await c.claim("tok", 7)
    await c.driver.start(got[:3], "tok")
    await c.claim("tok-b", 1, queue=other)
    await counts_agree(c, "after claims and starts ")
    await c.driver.settle(
        [
            Outcome("ce-0", Status.DONE),
            Outcome("ce-1", Status.FAILED, error="last attempt"),
            Outcome("ce-2", Status.CANCELLED, error="stop"),
        ],
        "tok",
    )
    await c.driver.settle([Outcome("ce-b", Status.DONE)], "tok-b")
    await counts_agree(c, "after settles DONE, KILLED and CANCELLED ")
    await c.driver.cancel("ce-3")
    await c.driver.cancel("ce-4")
    await c.driver.cancel("ce-6")
    await c.driver.settle([Outcome("ce-3", Status.DONE)], "tok")
    await c.driver.release(["ce-4"], "tok")
    await counts_agree(c, "after a flagged task settled DONE and one released ")
    c.clock.advance(60.0)
    await c.driver.rescue(None)  # ce-5 KILLED (its only attempt), ce-6 CANCELLED (flagged)
    await c.driver.cancel("ce-7")
    await counts_agree(c, "after a rescue and a cancel of a pending task ")
    c.expect(await c.driver.retry("ce-1"), "retry of a KILLED task refused")
    await c.driver.replace(
        [c.task("ce-0"), c.task("ce-2", status=Status.DONE, finished_at=c.clock.now)]
    )
    await counts_agree(c, "after a retry and replacing pushes ")
    delete = getattr(c.driver, "delete", None)  # not part of the protocol: the CLI's
    if delete is not None:
        await delete(["ce-5", "ce-f1"])
        await counts_agree(c, "after a delete ")
    await c.driver.prune(None, {Status.DONE: c.clock.now + 1.0}, 1, 0.0)
    await counts_agree(c, "after a prune ")
    await c.driver.purge(c.clock.now + 1.0)
    await counts_agree(c, "after a purge ")


async def admin_retry(c: _Ctx) -> None:
    """Retry makes a FAILED or KILLED task PENDING now with one more attempt allowed."""
    await c.insert(c.task("ar-1", max_attempts=1), c.task("ar-2", priority=-1))
    await c.claim("tok", 1)
    await c.driver.settle([Outcome("ar-1", Status.FAILED, error="x")], "tok")
    await c.status("ar-1", Status.KILLED, "after its only attempt failed")
    c.expect(not await c.driver.retry("ar-2"), "retry of a PENDING task returned True")
    c.clock.advance(3.0)
    c.expect(await c.driver.retry("ar-1"), "retry of a KILLED task refused")
    rec = await c.status("ar-1", Status.PENDING, "after retry")
    c.near(rec.run_at, c.clock.now, "run_at after retry")
    c.expect(rec.max_attempts >= rec.attempts + 1, "retry did not allow one more attempt")
    got = await c.driver.claim(c.queue, 1, "tok", 30.0)
    c.expect([r.id for r in got] == ["ar-1"], "a retried task was not claimable first")
    await c.driver.settle([Outcome("ar-1", Status.DONE)], "tok")
    c.expect(not await c.driver.retry("ar-1"), "retry of a DONE task returned True")
    # a FAILED task waiting for its next attempt is retried now
    c.expect([r.id for r in await c.driver.claim(c.queue, 1, "tok", 30.0)] == ["ar-2"], "ar-2")
    await c.driver.settle([Outcome("ar-2", Status.FAILED, error="y", delay=600)], "tok")
    c.expect(await c.driver.retry("ar-2"), "retry of a FAILED task refused")
    rec = await c.status("ar-2", Status.PENDING, "after retry of a FAILED task")
    c.near(rec.run_at, c.clock.now, "run_at after retry of a FAILED task")


async def purge(c: _Ctx) -> None:
    """Purge deletes the final tasks finished before a time, and only those."""
    await c.insert(*(c.task(f"pu-{i}") for i in range(5)))
    await c.claim("tok", 3)  # pu-0..2
    await c.driver.settle([Outcome("pu-0", Status.DONE)], "tok")
    c.clock.advance(10)
    await c.driver.settle([Outcome("pu-1", Status.KILLED, error="k")], "tok")
    await c.driver.cancel("pu-3")
    c.clock.advance(10)
    cutoff = c.clock.now - 15  # after pu-0 finished, before pu-1 and pu-3
    n = await c.driver.purge(cutoff)
    c.expect(n == 1, f"purge before the second finish deleted {n} task(s), expected 1")
    c.expect(await c.driver.get("pu-0") is None, "purge kept a DONE task older than the cutoff")
    n = await c.backend.purge(older_than=0)
    c.expect(n == 2, f"purge(older_than=0) deleted {n}, expected 2 (pu-1 and pu-3)")
    for id, st in (("pu-2", Status.QUEUED), ("pu-4", Status.PENDING)):
        await c.status(id, st, "after purge (unfinished tasks are never purged)")


async def bulk_writes(c: _Ctx) -> None:
    """``retry_many``, ``cancel_many`` and ``delete`` act on a page of ids as one by one.

    The page's ids take more than PostgreSQL's 8000 bytes of a notification.
    """
    ids = [f"bulk-write-{i:04d}" for i in range(BIG_PAGE)]
    await c.insert(*(c.task(id) for id in ids))
    got = await c.driver.claim(c.queue, BIG_PAGE, "tok", 3600.0)
    c.expect(len(got) == BIG_PAGE, f"claimed {len(got)} of {BIG_PAGE} tasks")
    killed = [Outcome(id, Status.KILLED, error="k") for id in ids[:-2]]
    await c.driver.settle([*killed, Outcome(ids[-2], Status.DONE)], "tok")
    n = await c.driver.retry_many([*ids, "bulk-missing"])
    c.expect(n == BIG_PAGE - 2, f"retry_many of {BIG_PAGE - 2} KILLED tasks retried {n}")
    await c.status(ids[0], Status.PENDING, "after retry_many")
    await c.status(ids[-2], Status.DONE, "after retry_many (a DONE task is not retried)")
    c.expect(await c.driver.retry_many([]) == 0, "retry_many([]) did not return 0")
    again = await c.driver.claim(c.queue, 2, "tok2", 3600.0)
    n = await c.driver.cancel_many(ids)
    want = BIG_PAGE - 1  # all but the DONE one; the RUNNING and two QUEUED ones flagged
    c.expect(n == want, f"cancel_many of {want} unfinished tasks gave {n}")
    for id in [ids[-1], *(r.id for r in again)]:
        rec = await c.status(id, Status.QUEUED, "after cancel_many of a claimed task")
        c.expect(rec.cancel_requested, f"cancel_many did not flag the claimed task {id}")
    pending = [id for id in ids[:-2] if id not in {r.id for r in again}]
    await c.status(pending[0], Status.CANCELLED, "after cancel_many")
    c.expect(await c.driver.cancel_many(pending) == 0, "cancel_many of CANCELLED tasks counted")
    n = await c.driver.delete(ids)
    want = BIG_PAGE - 3  # the three claimed tasks stay
    c.expect(n == want, f"delete of {BIG_PAGE} ids, three of them claimed, deleted {n}")
    left = sorted(t.id for t in await c.driver.get_many(ids))
    c.expect(left == sorted([ids[-1], *(r.id for r in again)]), f"after delete, {left} remain")


async def get_many(c: _Ctx) -> None:
    """``get_many`` reads the stored tasks among the ids as ``get`` does (missing ones left out)."""
    await c.insert(c.task("gm-1"), c.task("gm-2", priority=2), c.task("gm-3"))
    c.expect(await c.claim("tok", 1) == ["gm-2"], "gm-2 not claimable first")
    got = await c.driver.get_many(["gm-3", "gm-missing", "gm-2"])
    ids = sorted(r.id for r in got)
    c.expect(ids == ["gm-2", "gm-3"], f"get_many(['gm-3', 'gm-missing', 'gm-2']) gave {ids}")
    for r in got:
        one = await c.get(r.id)
        same = (r.queue, r.status, bytes(r.payload), r.attempts, r.priority, r.lease_token) == (
            one.queue,
            one.status,
            bytes(one.payload),
            one.attempts,
            one.priority,
            one.lease_token,
        )
        c.expect(same, f"get_many and get disagree on task {r.id}: {r!r} and {one!r}")
    empty = await c.driver.get_many([])
    c.expect(list(empty) == [], f"get_many([]) gave {empty!r}")


async def prune(c: _Ctx) -> None:
    """``prune`` deletes final tasks of its queue past their cutoff (at most ``limit``),
    never another queue's, and stale workers."""
    t0 = c.clock.now
    other = c.queue + "-other"
    await c.insert(c.task("pr-d1"), c.task("pr-k1"), c.task("pr-o1", queue=other))
    [o1] = await c.driver.claim(other, 1, "tok-o", 3600.0)
    await c.driver.settle([Outcome(o1.id, Status.DONE)], "tok-o")
    await c.claim("tok", 10, lease=3600.0)
    await c.driver.settle(
        [Outcome("pr-d1", Status.DONE), Outcome("pr-k1", Status.KILLED, error="k")], "tok"
    )
    c.clock.advance(10.0)
    await c.insert(c.task("pr-c1", run_at=t0 + 3600.0))
    await c.driver.cancel("pr-c1")
    c.clock.advance(10.0)
    await c.insert(c.task("pr-d2"), c.task("pr-f"), c.task("pr-q"))
    await c.claim("tok", 10, lease=3600.0)
    await c.driver.settle(
        [Outcome("pr-d2", Status.DONE), Outcome("pr-f", Status.FAILED, error="f", delay=3600.0)],
        "tok",
    )
    await c.insert(c.task("pr-p", run_at=t0 + 3600.0))
    c.clock.advance(10.0)
    cutoff = {Status.DONE: t0 + 15.0, Status.CANCELLED: t0 + 15.0}
    n = await c.driver.prune(c.queue, cutoff, 100, 0.0)
    c.expect(n == 2, f"prune of DONE and CANCELLED tasks finished before t0+15 deleted {n}, not 2")
    await c.status("pr-o1", Status.DONE, f"after a prune of queue {c.queue!r} (another queue's)")
    for id in ("pr-d1", "pr-c1"):
        c.expect(await c.driver.get(id) is None, f"prune kept {id}, finished before its cutoff")
    for id, st, why in (
        ("pr-k1", Status.KILLED, "(KILLED was not in the cutoffs)"),
        ("pr-d2", Status.DONE, "(finished after its cutoff)"),
        ("pr-f", Status.FAILED, "(not final)"),
        ("pr-q", Status.QUEUED, "(not final)"),
        ("pr-p", Status.PENDING, "(not final)"),
    ):
        await c.status(id, st, f"after prune {why}")
    late = t0 + 10_000.0
    n = await c.driver.prune(c.queue, {s: late for s in Status if not s.is_final}, 100, 0.0)
    c.expect(n == 0, f"prune with cutoffs for unfinished statuses deleted {n} task(s)")
    # Bounded batches: six DONE tasks, two at a time.
    await c.insert(*(c.task(f"pl-{i}") for i in range(5)))
    await c.claim("tok", 10)
    await c.driver.settle([Outcome(f"pl-{i}", Status.DONE) for i in range(5)], "tok")
    c.clock.advance(1.0)
    done_now = {Status.DONE: c.clock.now}
    batches = [await c.driver.prune(c.queue, done_now, 2, 0.0) for _ in range(4)]
    c.expect(batches == [2, 2, 2, 0], f"prune(limit=2) of six DONE tasks gave {batches}")
    await c.status("pr-k1", Status.KILLED, "after the DONE tasks were pruned")
    await c.status("pr-o1", Status.DONE, f"after prunes of queue {c.queue!r} (another queue's)")
    n = await c.driver.prune(None, done_now, 10, 0.0)
    c.expect(n == 1, f"prune of every queue (None) deleted {n} task(s), not pr-o1 alone")
    # Workers last seen before ``workers_before`` go too.
    await c.driver.register_worker(_worker("w-old", c.queue, c.clock.now))
    c.clock.advance(10.0)
    await c.driver.register_worker(_worker("w-new", c.queue, c.clock.now))
    n = await c.driver.prune(c.queue, {}, 10, c.clock.now - 5.0)
    c.expect(n == 0, f"prune with no cutoffs deleted {n} task(s)")
    names = [w.name for w in await c.driver.workers(0.0)]
    c.expect(names == ["w-new"], f"after prune of workers seen 5 s ago, workers(0) is {names}")


async def retention_rules(c: _Ctx) -> None:
    """A queue's stored retention: set, replaced, read per queue, forgotten; None kept apart."""
    other = c.queue + "-other"
    got = await c.driver.retentions([c.queue, other])
    c.expect(got == {}, f"retentions of a fresh store gave {got}, not {{}}")
    rule = RetentionRule(60.0, 3600.0, None)
    keep = RetentionRule(None, None, None)
    await c.driver.set_retention(c.queue, rule)
    await c.driver.set_retention(other, keep)
    got = await c.driver.retentions([c.queue])
    c.expect(got == {c.queue: rule}, f"retentions([{c.queue!r}]) gave {got}, not {rule}")
    got = await c.driver.retentions(None)
    want = {c.queue: rule, other: keep}
    c.expect(got == want, f"retentions(None) gave {got}, not {want} (keep-all is a stored rule)")
    got = await c.driver.retentions([other, "never-set"])
    c.expect(got == {other: keep}, f"retentions of a queue with no rule gave {got}")
    zero = RetentionRule(0.0, 0.5, 86400.0)
    await c.driver.set_retention(c.queue, zero)
    got = await c.driver.retentions([c.queue])
    c.expect(got == {c.queue: zero}, f"after a second set_retention, {got} (not replaced)")
    await c.driver.clear_retention(other)
    await c.driver.clear_retention("never-set")
    got = await c.driver.retentions(None)
    c.expect(got == {c.queue: zero}, f"after clear_retention({other!r}), retentions gave {got}")


def _worker(name: str, queue: str, started_at: float, running: int = 0) -> WorkerRecord:
    return WorkerRecord(name, "host-1", 4242, queue, 4, running, started_at)


async def workers_registry(c: _Ctx) -> None:
    """Workers register and refresh (``last_seen`` now), list by name when seen lately, leave."""
    t0 = c.clock.now
    await c.driver.register_worker(_worker("w-b", c.queue, t0 - 5.0))
    got = await c.driver.workers(t0 - 1.0)
    c.expect([w.name for w in got] == ["w-b"], f"workers() after one register gave {got!r}")
    w = got[0]
    fields = (w.host, w.pid, w.queue, w.concurrency, w.running)
    c.expect(fields == ("host-1", 4242, c.queue, 4, 0), f"a worker's entry came back as {w!r}")
    c.near(w.started_at, t0 - 5.0, "started_at of a registered worker")
    c.near(w.last_seen, t0, "last_seen of a worker just registered")
    c.clock.advance(10.0)
    await c.driver.register_worker(_worker("w-a", c.queue, t0 + 10.0))
    names = [w.name for w in await c.driver.workers(t0 + 5.0)]
    c.expect(names == ["w-a"], f"workers(seen_after=t0+5) gave {names}; w-b was last seen at t0")
    names = [w.name for w in await c.driver.workers(t0 - 1.0)]
    c.expect(names == ["w-a", "w-b"], f"workers() gave {names}, expected them by name")
    await c.driver.register_worker(_worker("w-b", c.queue, t0 - 5.0, running=3))
    got = await c.driver.workers(t0 + 5.0)
    c.expect([w.name for w in got] == ["w-a", "w-b"], f"a refresh did not renew w-b: {got!r}")
    c.near(got[1].last_seen, c.clock.now, "last_seen of a refreshed worker")
    c.expect(got[1].running == 3, f"a refresh stored running={got[1].running}, not 3")
    await c.driver.remove_worker("w-a")
    await c.driver.remove_worker("w-unknown")
    names = [w.name for w in await c.driver.workers(0.0)]
    c.expect(names == ["w-b"], f"after remove_worker('w-a'), workers() gave {names}")
