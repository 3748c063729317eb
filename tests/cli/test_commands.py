"""push, status, tasks, show, retry, cancel, purge and migrate, run in process on SQLite files.

What a task's whole life adds to them (cancel of a running task, wait, if-exists,
pause, workers) is tested in ``test_lifecycle.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import cbor2
import pytest
import trio
from cli.cli_project import Cli

from trioqueue import Status, StoredTask
from trioqueue._cli._output import escape


def test_push_options_and_the_default_backend(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIOQUEUE_BACKEND")
    before = time.time()
    task_id = cli.push(
        "jobs:send", '{"to": "x"}', "--id", "order-7", "--queue", "mail",
        "--delay", "1h", "--priority", "5", "--max-attempts", "3",
    )  # fmt: skip
    assert task_id == "order-7"
    assert (cli.root / "trioqueue.db").exists()  # the default backend
    shown = cli.json("show", "order-7")
    assert (shown["queue"], shown["priority"], shown["max_attempts"]) == ("mail", 5, 3)
    stamp = datetime.fromisoformat(shown["run_at"].replace("Z", "+00:00")).timestamp()
    assert before + 3600 - 5 < stamp < time.time() + 3600 + 5
    # Pushing the same id again stores nothing new.
    assert cli.push("jobs:send", '{"to": "y"}', "--id", "order-7", "--queue", "mail") == "order-7"
    assert cli.json("tasks")[0]["args"] == {"to": "x"}
    assert len(cli.json("tasks")) == 1
    # A delayed task is not ready: a burst worker on its queue exits at once.
    err = cli("worker", "jobs:send", "--queue", "mail", "--burst").err
    assert "done 0, failed 0, killed 0" in err
    # --backend overrides the environment.
    monkeypatch.setenv("TRIOQUEUE_BACKEND", "sqlite:///other.db")
    assert "no trioqueue store at 'sqlite:///other.db'" in cli("status", code=7).err
    assert not (cli.root / "other.db").exists()  # a read-only command creates nothing
    assert cli.json("status", "--backend", "sqlite:///trioqueue.db") == {
        "mail": {"pending": 1, "queued": 0, "running": 0, "done": 0, "failed": 0,
                 "killed": 0, "cancelled": 0},
    }  # fmt: skip


def test_admin_commands(cli: Cli) -> None:
    flaky = cli.push("jobs:send", '{"to": "flaky"}')
    later = cli.push("jobs:send", '{"to": "later"}', "--delay", "2h")
    cli("worker", "jobs:send", "--burst")
    assert cli.status() == {"killed": 1, "pending": 1}

    table = cli("status").out.splitlines()
    assert table[0].split() == [
        "queue", "pending", "queued", "running", "done", "failed", "killed", "cancelled", "total",
    ]  # fmt: skip
    assert table[1].split() == ["jobs:send", "1", "0", "0", "0", "0", "1", "0", "2"]
    assert cli.json("status", "--queue", "nothing-here") == {}
    assert cli("status", "--queue", "nothing-here").out == "no tasks in queue 'nothing-here'\n"

    listed = cli("tasks", "--status", "killed").out
    assert flaky in listed and later not in listed and "aborted: not fixed yet" in listed
    assert [t["id"] for t in cli.json("tasks")] == [later, flaky]  # newest first
    assert [t["id"] for t in cli.json("tasks", "--limit", "1", "--offset", "1")] == [flaky]

    shown = cli("show", flaky).out
    assert "status        killed" in shown and '{"to": "flaky"}' in shown

    # retry a killed task: it runs again and, now fixed, succeeds.
    assert cli("retry", flaky).out == f"retried {flaky}\n"
    assert cli.json("show", flaky)["status"] == "pending"
    (cli.root / "fixed").touch()
    cli("worker", "jobs:send", "--burst")
    done = cli.json("show", flaky)
    assert (done["status"], done["attempts"]) == ("done", 2)
    assert cli("retry", flaky, code=1).err == (
        f"trioqueue: error: task {flaky} is done: only failed or killed tasks can be retried\n"
    )

    assert cli("cancel", later).out == f"cancelled {later}\n"
    assert cli.json("show", later)["status"] == "cancelled"
    assert "only a task that has not finished can be cancelled" in cli("cancel", later, code=1).err

    assert cli("purge", "--older-than", "1h").out == "purged 0 tasks\n"
    assert cli("purge", "--older-than", "0s").out == "purged 2 tasks\n"
    assert cli.status() == {}
    assert cli("status").out == "no tasks\n"
    assert cli("tasks").out == "no tasks\n"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["push", "jobs:send", "{bad"], 2, "ARGS_JSON is not valid JSON"),
        (["push", "jobs:send", '{"to": "\\ud800"}'], 2,
         "ARGS_JSON is not valid JSON: it holds an escaped lone surrogate (\\ud800)"),
        (["push", "jobs:send", '{"subject": "x"}'], 2,
         "args do not fit jobs:send (Email): payload does not fit Email: "
         "Object missing required field `to`"),
        (["push", "jobs:send", '{"to": 5}'], 2, "Expected `str`, got `int` - at `$.to`"),
        (["show", "NOPE"], 7, "no trioqueue store at 'sqlite:///q.db' yet"),
        (["wait", "NOPE"], 7, "no trioqueue store at 'sqlite:///q.db' yet"),
        (["retry", "NOPE"], 4, "no task with id 'NOPE'"),
        (["cancel", "NOPE"], 4, "no task with id 'NOPE'"),
    ],
)  # fmt: skip
def test_user_errors(cli: Cli, argv: list[str], code: int, message: str) -> None:
    lines = cli(*argv, code=code).err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trioqueue: error: "), lines
    assert message in lines[0]
    assert cli.status() == {}  # nothing was pushed


def test_migrate_sqlite_and_memory(cli: Cli) -> None:
    assert cli("migrate").out.startswith("sqlite schema up to date at version ")
    assert (cli.root / "q.db").exists()
    assert cli("migrate", "--backend", "memory://").out == "memory backend: nothing to migrate\n"


def test_migrate_failure_is_a_backend_error(cli: Cli) -> None:
    err = cli("migrate", "--backend", "sqlite:///no-such-dir/q.db", "--wait", "0", code=3).err
    assert err.startswith("trioqueue: error: cannot migrate 'sqlite:///no-such-dir/q.db': ")
    assert not (cli.root / "no-such-dir").exists()


@pytest.fixture
def pg_url() -> Iterator[str]:
    from pg_support import fresh_database

    with fresh_database() as url:
        yield url


@pytest.mark.postgres
def test_postgres_migrate_push_and_work(
    cli: Cli, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIOQUEUE_BACKEND", pg_url)
    assert cli("migrate").out.startswith("postgresql schema up to date at version ")
    out = cli("migrate", "--schema", "jobs_cli").out
    assert out.startswith("postgresql schema up to date at version ")
    task_id = cli.push("jobs:send", '{"to": "pg@example.com"}', "--schema", "jobs_cli")
    assert cli.status() == {}  # another schema
    err = cli("worker", "jobs:send", "--burst", "--schema", "jobs_cli").err
    assert "done 1, failed 0, killed 0" in err
    shown = cli.json("show", task_id, "--schema", "jobs_cli")
    assert (shown["status"], shown["result"]["sent"]) == ("done", "pg@example.com")
    bad = cli("migrate", "--schema", "no-dashes", code=2).err
    assert bad.startswith(f"trioqueue: error: cannot migrate {pg_url!r}: ")
    for system in ("pg_catalog", "information_schema", "pg_toast", "PG_temp_1"):
        for argv in (["migrate"], ["status"], ["worker", "jobs:send", "--burst"]):
            err = cli(*argv, "--schema", system, code=2).err
            assert f"schema {system!r} is PostgreSQL's own" in err, err
    for argv in (["push", "jobs:send", '{"to": "x"}'], ["worker", "jobs:send", "--burst"]):
        err = cli(*argv, "--queue", "bad\x00queue", code=2).err
        assert "queue must be 1 to 255 characters" in err, err


def _store(*records: Any, codec: Any = None) -> None:
    """Insert stored records as they are into ``q.db`` (what another producer may write)."""
    from trioqueue.backends.sqlite import SqliteBackend

    async def insert() -> None:
        async with SqliteBackend.open("sqlite:///q.db", codec=codec) as b:
            await b.driver.insert(list(records))

    trio.run(insert)


def test_a_bignum_payload_is_shown_and_listed(cli: Cli) -> None:
    huge = 2**100_000  # 30,000 decimal digits: more than Python writes by default
    _store(StoredTask(id="big", queue="default", payload=cbor2.dumps([huge, 5])))
    listed = cli.json("tasks", "--codec", "cbor")
    assert listed[0]["args"] == [{"$int": hex(huge)}, 5]
    assert cli.json("show", "big", "--codec", "cbor")["args"] == [{"$int": hex(huge)}, 5]
    assert f'[{{"$int": "{hex(huge)}"}}, 5]' in cli("show", "big", "--codec", "cbor").out


def test_control_characters_in_stored_data_are_escaped(cli: Cli) -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J\r\u202e\x9b31m"
    _store(
        StoredTask(
            id=f"id{evil}",
            queue=f"q{evil}",
            payload=b'"args\\u001b[31m\xc2\x9b"',
            status=Status.KILLED,
            meta={"k\x1b": f"v{evil}"},
            last_error=f"boom{evil}\nstatus  done",
            traceback=f"Traceback{evil}\nstatus  done",
        )
    )
    outputs = [
        cli("status").out,
        cli("tasks").out,
        cli("show", f"id{evil}").out,
        cli("show", f"id{evil}", "--json").out,
        cli("tasks", "--json").out,
        cli("status", "--json").out,
    ]
    for out in outputs:
        assert not any(c in out for c in "\x1b\x07\r\u202e\x9b"), repr(out)
    shown = cli("show", f"id{evil}").out
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown
    assert "boom\\x1b]0;pwned" in shown and "\\nstatus  done" in shown
    # One line per field, none forged; the traceback's two lines indented under its name.
    assert len(shown.splitlines()) == 20
    assert shown.splitlines()[-3:] == ["traceback", "  Traceback" + escape(evil), "  status  done"]
    assert cli.json("show", f"id{evil}")["meta"] == {"k\x1b": f"v{evil}"}  # JSON keeps the data
