"""SQLite: migrating a file in use, and the claim index serving ``next_run_at``."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest

from trioqueue import Status, StoredTask
from trioqueue.backends import _sqlite_schema as schema
from trioqueue.backends import _sqlite_statements as sql
from trioqueue.backends.sqlite import SCHEMA_VERSION, SqliteDriver

T0 = 1_700_000_000.0


def waiting(id: str, run_at: float, *, priority: int = 0, **fields: object) -> StoredTask:
    return StoredTask(
        id=id,
        queue=str(fields.pop("queue", "q")),
        payload=b'"x"',
        run_at=run_at,
        priority=priority,
        created_at=T0,
        **fields,  # type: ignore[arg-type]
    )


# Earliest waiting task of "q": "late-high" and "low" wait too, at other priorities;
# the others are not waiting (claimed, final) or of another queue.
TASKS = [
    waiting("high", T0 + 30, priority=5),
    waiting("late-high", T0 + 90, priority=5),
    waiting("mid", T0 + 20, priority=0, status=Status.FAILED, attempts=1, last_error="E"),
    waiting("low", T0 + 10, priority=-7),
    waiting("lowest-later", T0 + 40, priority=-9),
    waiting("running", T0 - 50, status=Status.RUNNING, lease_token="t", lease_expires_at=T0),
    waiting("done", T0 - 60, status=Status.DONE, finished_at=T0, result=b"1"),
    waiting("elsewhere", T0 - 70, queue="other"),
]


def _schema_of(path: str) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT type, name FROM sqlite_master WHERE name LIKE 'trioqueue%' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()


def _definitions(path: str) -> dict[str, str]:
    """Each index and trigger of the file and its SQL, whitespace folded."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master "
            "WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
    finally:
        conn.close()
    return {name: " ".join(text.split()) for name, text in rows}


def _make_version(path: str, version: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        for script in schema.MIGRATIONS[:version]:
            for statement in schema._statements(script):
                conn.execute(statement)
        conn.execute("CREATE TABLE trioqueue_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO trioqueue_schema (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_version_6_file_with_tasks_migrates(tmp_path: Path) -> None:
    old, new = str(tmp_path / "old.db"), str(tmp_path / "new.db")
    _make_version(old, 6)
    conn = sqlite3.connect(old, isolation_level=None)
    conn.executemany(
        f"INSERT INTO trioqueue_tasks ({sql.COLUMNS.select}) "
        f"VALUES ({', '.join('?' * len(sql.COLUMNS.names))})",
        sql.COLUMNS.rows(TASKS),
    )
    assert ("index", "trioqueue_tasks_schedule") in _schema_of(old)
    conn.close()

    d = await SqliteDriver.connect(old, clock=lambda: T0)
    try:
        kept = [await d.get(t.id) for t in TASKS]
        assert await d.next_run_at("q") == T0 + 10
        claimed = [t.id for t in await d.claim("q", 10, "tok", 30.0)]
    finally:
        await d.aclose()
    assert [asdict(t) for t in kept if t is not None] == [asdict(t) for t in TASKS]
    assert claimed == []  # none is due at T0
    conn = sqlite3.connect(old)
    try:
        assert conn.execute("SELECT version FROM trioqueue_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    await (await SqliteDriver.connect(new)).aclose()
    assert ("index", "trioqueue_tasks_schedule") not in _schema_of(old)
    assert _schema_of(old) == _schema_of(new)  # migrated as a new file is made
    assert _definitions(old) == _definitions(new)


def test_no_index_tests_a_status_against_a_list_of_three(tmp_path: Path) -> None:
    """A partial index's ``IN`` list of three or more is a temporary table SQLite
    builds and probes on every row it writes; two values or ORs are comparisons."""
    path = str(tmp_path / "tasks.db")
    conn, _ = schema.open_connection(path, 1.0, "normal", True)
    conn.close()
    definitions = _definitions(path)
    assert definitions["trioqueue_tasks_finished"].endswith(f"WHERE {schema.FINISHED}")
    assert definitions["trioqueue_tasks_status_rare"].endswith(f"WHERE {schema.RARE}")
    for name, text in definitions.items():
        for listed in re.findall(r"IN \(([^()]*)\)", text):
            assert listed.count(",") < 2 or name == "trioqueue_flow_node_ended", (name, text)


@pytest.fixture
async def driver(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = await SqliteDriver.connect(str(tmp_path / "tasks.db"), clock=lambda: T0)
    try:
        yield d
    finally:
        await d.aclose()


async def test_next_run_at_is_the_earliest_waiting_task_of_any_priority(
    driver: SqliteDriver,
) -> None:
    assert await driver.next_run_at("q") is None
    await driver.insert(TASKS)
    assert await driver.next_run_at("q") == T0 + 10
    assert await driver.next_run_at("other") == T0 - 70
    assert await driver.next_run_at("nobody") is None
    await driver.pause("q")
    assert await driver.next_run_at("q") is None
    await driver.resume("q")
    assert await driver.next_run_at("q") == T0 + 10


async def test_next_run_at_follows_claims(driver: SqliteDriver) -> None:
    # The higher the priority, the earlier: each claim takes the earliest away.
    await driver.insert([waiting(f"t{p}", T0 - 100 - p, priority=p) for p in range(-3, 4)])
    seen = []
    while (at := await driver.next_run_at("q")) is not None:
        seen.append(at)
        assert len(await driver.claim("q", 1, "tok", 30.0)) == 1
    assert seen == [T0 - 100 - p for p in range(3, -4, -1)]


def test_next_run_at_searches_the_claim_index(tmp_path: Path) -> None:
    # Each read of the tasks is a search of the claim index: never a walk over
    # the queue's waiting tasks.
    path = str(tmp_path / "plan.db")
    conn, _ = schema.open_connection(path, 1.0, "normal", True)
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.NEXT_RUN_AT, ("q",))]
    finally:
        conn.close()
    reads = [step for step in plan if "trioqueue_tasks" in step]
    assert reads, plan
    assert all(
        s.startswith("SEARCH trioqueue_tasks USING INDEX trioqueue_tasks_claim") for s in reads
    )


def test_the_searches_by_run_read_the_run_index(tmp_path: Path) -> None:
    """The run cancel's cascade and the end rule's (the trigger's second statement)
    find a run's tasks through the run index, which holds exactly the tasks of a run."""
    from trioqueue.backends import _sqlite_flows as flows

    path = str(tmp_path / "runs.db")
    conn, _ = schema.open_connection(path, 1.0, "normal", True)
    try:
        conn.executemany(
            f"INSERT INTO trioqueue_tasks ({sql.COLUMNS.select}) "
            f"VALUES ({', '.join('?' * len(sql.COLUMNS.names))})",
            sql.COLUMNS.rows(
                [
                    waiting("plain", T0),
                    waiting("other-meta", T0, meta={"k": "v"}),
                    waiting("node", T0, meta={"trioqueue_run": "r", "trioqueue_node": "a"}),
                    waiting("r", T0, meta={"trioqueue_run": "r"}),
                    waiting("elsewhere", T0, meta={"trioqueue_run": "s"}),
                ]
            ),
        )
        (trigger,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'trioqueue_flow_node_ended'"
        ).fetchone()
        end_rule = trigger.split("BEGIN", 1)[1].split(";")[1]
        for old, new in (("new.meta", ":meta"), ("new.id", ":id"), ("new.finished_at", ":at")):
            end_rule = end_rule.replace(old, new)
        searches = [
            (end_rule, {"meta": '{"trioqueue_run": "r"}', "id": "node", "at": T0}),
            (flows._CASCADE, {"run": "r", "now": T0}),
        ]
        for statement, params in searches:
            steps = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + statement, params)]
            assert any(
                s.startswith("SEARCH trioqueue_tasks USING INDEX trioqueue_tasks_run")
                for s in steps
            ), steps
            assert not any(s.startswith("SCAN trioqueue_tasks") for s in steps), steps
        indexed = conn.execute(
            "SELECT id FROM trioqueue_tasks INDEXED BY trioqueue_tasks_run "
            f"WHERE {schema.RUN_SEARCH} IS NOT NULL ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert indexed == [("elsewhere",), ("node",), ("r",)]
