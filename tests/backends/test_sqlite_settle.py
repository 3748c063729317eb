"""SQLite: a batch of outcomes settled in one statement follows ``apply_outcome`` row by row."""

from __future__ import annotations

import copy
import math
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest

from trioqueue import Outcome, Status, StoredTask
from trioqueue._driver import apply_outcome
from trioqueue.backends.sqlite import SqliteDriver

T0 = 1_700_000_000.0
NOW = T0 + 50.0

# Arbitrary bytes: not UTF-8, a NUL, every byte value once.
BINARY = b"\xff\x00\xfe" + bytes(range(256))


def held(id: str, **fields: object) -> StoredTask:
    """A task claimed under the token "tok", on its second attempt of three."""
    base: dict[str, object] = {
        "status": Status.RUNNING,
        "attempts": 2,
        "max_attempts": 3,
        "run_at": T0,
        "created_at": T0 - 10,
        "lease_token": "tok",
        "lease_expires_at": T0 + 30,
        "last_error": "earlier failure",
        "traceback": "earlier traceback",
        "worker": "w",
    }
    base.update(fields)
    return StoredTask(id=id, queue="q", payload=b'"x"', **base)  # type: ignore[arg-type]


# (stored task, outcome): one of each rule, in one batch.
CASES: list[tuple[StoredTask, Outcome]] = [
    (held("done"), Outcome("done", Status.DONE, result=b'{"ok": 1}', started_at=T0 + 1)),
    (held("done-none"), Outcome("done-none", Status.DONE)),
    (held("done-note"), Outcome("done-note", Status.DONE, error="result not stored: big")),
    (held("done-unicode"), Outcome("done-unicode", Status.DONE, result="é\u2028😀".encode())),
    (held("done-empty"), Outcome("done-empty", Status.DONE, result=b"")),
    (held("done-binary"), Outcome("done-binary", Status.DONE, result=BINARY)),
    (
        held("failed-again", attempts=1),
        Outcome("failed-again", Status.FAILED, error="E: x", traceback="tb", delay=7.5),
    ),
    (held("failed-out", attempts=3), Outcome("failed-out", Status.FAILED, error="E: y")),
    (held("failed-over", attempts=9), Outcome("failed-over", Status.FAILED, error="E")),
    (held("killed"), Outcome("killed", Status.KILLED, error="Abort: no", traceback=None)),
    (held("cancelled"), Outcome("cancelled", Status.CANCELLED, error="Cancelled: asked")),
    (held("snooze"), Outcome("snooze", Status.PENDING, delay=3.25, progress='{"p": 1}')),
    (held("snooze-first", attempts=0), Outcome("snooze-first", Status.PENDING, delay=-2.0)),
    (held("negative-delay", attempts=1), Outcome("negative-delay", Status.FAILED, delay=-5)),
    (held("never-again", attempts=1), Outcome("never-again", Status.FAILED, delay=math.inf)),
    (held("asked", cancel_requested=True), Outcome("asked", Status.DONE, result=b"1")),
    (
        held("asked-failed", cancel_requested=True),
        Outcome("asked-failed", Status.FAILED, error="E: z", traceback="tb2", delay=1.0),
    ),
    (held("asked-snooze", cancel_requested=True), Outcome("asked-snooze", Status.PENDING)),
    (held("asked-empty", cancel_requested=True), Outcome("asked-empty", Status.KILLED, error="")),
    (held("queued", status=Status.QUEUED), Outcome("queued", Status.DONE, result=b"2")),
    (held("nul-error"), Outcome("nul-error", Status.KILLED, error="a\x00b", traceback="t\x00")),
    (held("progress"), Outcome("progress", Status.DONE, progress='"half\\u0000way"')),
    (held("start-kept", started_at=T0 + 2), Outcome("start-kept", Status.DONE)),
]

# Tasks the batch must leave alone: another lease, no lease, already final.
UNTOUCHED: list[tuple[StoredTask, Outcome]] = [
    (held("stale", lease_token="other"), Outcome("stale", Status.DONE, result=b"late")),
    (held("no-lease", lease_token=None), Outcome("no-lease", Status.FAILED, error="E")),
    (
        held("final", status=Status.DONE, lease_token="tok"),
        Outcome("final", Status.KILLED, error="late"),
    ),
    (held("pending", status=Status.PENDING), Outcome("pending", Status.DONE)),
]


def expected(rec: StoredTask, outcome: Outcome) -> StoredTask:
    out = copy.deepcopy(rec)
    apply_outcome(out, outcome, NOW)
    return out


@pytest.fixture
async def driver(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = await SqliteDriver.connect(str(tmp_path / "tasks.db"), clock=lambda: NOW)
    try:
        yield d
    finally:
        await d.aclose()


async def test_a_mixed_batch_follows_apply_outcome(driver: SqliteDriver) -> None:
    recs = [r for r, _ in CASES + UNTOUCHED]
    assert await driver.insert(recs) == len(recs)
    outcomes = [o for _, o in CASES + UNTOUCHED]
    applied = await driver.settle(outcomes, "tok")
    assert applied == [o.id for _, o in CASES]
    for rec, outcome in CASES:
        got = await driver.get(rec.id)
        assert got is not None
        assert asdict(got) == asdict(expected(rec, outcome)), rec.id
    for rec, _ in UNTOUCHED:
        got = await driver.get(rec.id)
        assert got is not None and asdict(got) == asdict(rec), rec.id


async def test_a_result_is_stored_byte_for_byte(driver: SqliteDriver) -> None:
    results = [BINARY, b"\x00", b"", b'"\\u0000"', "ü".encode(), b"\xc3", b"ab"]
    recs = [held(f"r{i}") for i in range(len(results))]
    await driver.insert(recs)
    outcomes = [Outcome(r.id, Status.DONE, result=v) for r, v in zip(recs, results, strict=True)]
    assert await driver.settle(outcomes, "tok") == [r.id for r in recs]
    conn = sqlite3.connect(driver.path)
    try:
        stored = dict(conn.execute("SELECT id, result FROM trioqueue_tasks").fetchall())
    finally:
        conn.close()
    assert [stored[r.id] for r in recs] == results
    assert all(type(v) is bytes for v in stored.values())


async def test_the_first_of_two_outcomes_for_one_task_wins(driver: SqliteDriver) -> None:
    await driver.insert([held("t")])
    first, second = Outcome("t", Status.DONE, result=b"1"), Outcome("t", Status.KILLED)
    assert await driver.settle([first, second], "tok") == ["t"]
    got = await driver.get("t")
    assert got is not None and asdict(got) == asdict(expected(held("t"), first))


async def test_a_settled_batch_is_not_settled_again(driver: SqliteDriver) -> None:
    recs = [r for r, _ in CASES]
    await driver.insert(recs)
    outcomes = [o for _, o in CASES]
    assert len(await driver.settle(outcomes, "tok")) == len(outcomes)
    assert await driver.settle(outcomes, "tok") == []


async def test_a_node_killed_in_a_batch_ends_its_run(driver: SqliteDriver) -> None:
    # The end rule is a trigger on the status column: the batch's UPDATE fires it.
    run = held("run", meta={"trioqueue_run": "run"}, lease_token="run-lease")
    node = held("node", meta={"trioqueue_run": "run", "trioqueue_node": "a"})
    sibling = StoredTask(
        id="sibling",
        queue="q",
        payload=b"1",
        run_at=T0,
        created_at=T0,
        meta={"trioqueue_run": "run", "trioqueue_node": "b"},
    )
    other = held("other")
    await driver.insert([run, node, sibling, other])
    outcomes = [Outcome("other", Status.DONE), Outcome("node", Status.KILLED, error="Abort: x")]
    assert await driver.settle(outcomes, "tok") == ["other", "node"]
    got = {id: await driver.get(id) for id in ("run", "node", "sibling", "other")}
    assert {id: t.status for id, t in got.items() if t is not None} == {
        "run": Status.KILLED,
        "node": Status.KILLED,
        "sibling": Status.CANCELLED,
        "other": Status.DONE,
    }
    assert got["run"] is not None and got["run"].last_error == "node 'a' ended killed: Abort: x"


async def test_a_batch_settle_finds_tasks_by_id(driver: SqliteDriver) -> None:
    # The statement looks each outcome's task up by its id: never a walk over
    # the tasks of a status (every QUEUED and RUNNING task, then the batch each).
    from trioqueue.backends import _sqlite_statements as sql

    conn = sqlite3.connect(driver.path)
    try:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + sql.SETTLE_BATCH, {"now": 0, "token": "t", "outcomes": "[]"}
        ).fetchall()
    finally:
        conn.close()
    steps = [row[3] for row in plan]
    assert any(s.startswith("SEARCH trioqueue_tasks USING INDEX sqlite_autoindex") for s in steps)
    assert not any(s.startswith("SCAN trioqueue_tasks") for s in steps), steps
