"""What an operator does from the command line: routing, several handlers, safe admin, probes."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator

import psycopg
import pytest
import trio
from cli.cli_project import Cli

from trioqueue import Status
from trioqueue._cli._backends import install_hint
from trioqueue._driver import Outcome
from trioqueue.backends.postgres import PostgresBackend

STATEFUL = textwrap.dedent(
    """
    from trioqueue import Data, WorkerBuilder


    class Mailer:
        def __init__(self) -> None:
            self.sent = 0


    async def send(to: str, mailer: Data[Mailer]) -> str:
        mailer.sent += 1
        return f"sent to {to} by a mailer that sent {mailer.sent}"


    async def shout(text: str) -> str:
        return text.upper()


    HANDLERS = [send, shout]


    def configure_worker(builder: WorkerBuilder) -> None:
        builder.data(Mailer())
    """
)


@pytest.fixture
def stateful(cli: Cli) -> Cli:
    (cli.root / "stateful.py").write_text(STATEFUL)
    return cli


def test_each_handler_has_its_own_queue(cli: Cli) -> None:
    # Pushed with one handler, a task is never claimed by another handler's worker.
    scraped = cli.push("jobs:scrape", '"http://127.0.0.1:9/"')
    sent = cli.push("jobs:send", '{"to": "a"}')
    assert cli.json("show", scraped)["queue"] == "jobs:scrape"
    assert cli.json("show", sent)["queue"] == "jobs:send"
    assert "done 1, failed 0, killed 0" in cli("worker", "jobs:send", "--burst").err
    assert cli.json("show", scraped)["status"] == "pending"  # untouched, not killed
    # --queue still routes by hand.
    other = cli.push("jobs:send", '{"to": "b"}', "--queue", "mail")
    assert cli.json("show", other)["queue"] == "mail"


def test_configure_worker_provides_data_and_a_list_serves_many_handlers(stateful: Cli) -> None:
    cli = stateful
    a = cli.push("stateful:send", '"ada"')
    b = cli.push("stateful:shout", '"hi"')
    err = cli("worker", "stateful:HANDLERS", "--burst", "--log-level", "info").err
    assert "done 2, failed 0, killed 0" in err
    assert "queue 'stateful:send', handler stateful:HANDLERS[0]" in err
    assert "queue 'stateful:shout', handler stateful:HANDLERS[1]" in err
    assert cli.json("show", a)["result"] == "sent to ada by a mailer that sent 1"
    assert cli.json("show", b)["result"] == "HI"


def test_data_without_configure_worker_says_how_to_provide_it(cli: Cli) -> None:
    err = cli("worker", "jobs:needs_state", "--burst", code=2).err
    assert "Data[" in err and "define configure_worker(builder) in its module" in err


def test_two_handlers_on_one_queue_are_refused(stateful: Cli) -> None:
    err = stateful("worker", "stateful:HANDLERS", "--queue", "q", "--burst", code=2).err
    assert "would share queue 'q' (--queue gives them one queue)" in err


def test_did_you_mean(cli: Cli) -> None:
    err = cli("worker", "jobs:sned", code=2).err
    assert err == (
        "trioqueue: error: module 'jobs' has no attribute 'sned': did you mean 'send'?\n"
    )


def test_urls_of_the_wrong_shape_are_refused(cli: Cli) -> None:
    for url in ("sqlite:/x.db", "sqlite://x.db", "sqlite:x.db"):
        err = cli("push", "jobs:send", '{"to": "a"}', "--backend", url, code=2).err
        assert "sqlite:///relative.db or sqlite:////abs.db" in err, err
    assert not list(cli.root.glob("x.db*"))


def test_ids_are_found_in_any_case(cli: Cli) -> None:
    task_id = cli.push("jobs:send", '{"to": "a"}')
    assert task_id.upper() == task_id
    assert cli.json("show", task_id.lower())["id"] == task_id
    assert cli("cancel", task_id.lower()).out == f"cancelled {task_id}\n"
    custom = cli.push("jobs:send", '{"to": "a"}', "--id", "Order-7")
    assert cli.json("show", "Order-7")["id"] == custom


def test_max_tasks_stops_a_serving_worker(cli: Cli) -> None:
    for n in range(5):
        cli.push("jobs:send", f'{{"to": "u{n}"}}')
    err = cli("worker", "jobs:send", "--max-tasks", "2", "--concurrency", "1").err
    assert "finished --max-tasks tasks: stopping" in err
    assert err.splitlines()[-1].startswith("done 2, failed 0, killed 0 in ")
    assert cli.status() == {"done": 2, "pending": 3}


def test_json_logs_with_one_record_per_task_end(cli: Cli) -> None:
    ok = cli.push("jobs:send", '{"to": "a"}')
    bad = cli.push("jobs:send", '{"to": "abort"}')
    err = cli("worker", "jobs:send", "--burst", "--log-format", "json", "--log-level", "info").err
    lines = err.splitlines()
    assert lines[-1].startswith("done 1, failed 0, killed 1 in ")  # the summary is no log
    records = [json.loads(line) for line in lines[:-1]]
    banner = next(r for r in records if r["logger"] == "trioqueue.cli.banner")
    assert (banner["queue"], banner["handler"], banner["concurrency"]) == (
        "jobs:send",
        "jobs:send",
        10,
    )
    assert banner["backend"] == "sqlite:///q.db" and banner["pid"] > 0
    ends = {r["task_id"]: r for r in records if r["logger"] == "trioqueue.cli.tasks"}
    assert (ends[ok]["outcome"], ends[ok]["attempt"]) == ("done", 1)
    assert ends[bad]["outcome"] == "killed" and ends[bad]["duration"] >= 0
    assert all(r["level"] in ("info", "error", "warning") and r["time"] for r in records)


def test_retry_and_cancel_by_filter(cli: Cli) -> None:
    for _ in range(3):
        cli.push("jobs:send", '{"to": "abort"}', "--max-attempts", "1")
    later = cli.push("jobs:send", '{"to": "x"}', "--delay", "1h")
    cli("worker", "jobs:send", "--burst")
    assert cli.status() == {"killed": 3, "pending": 1}
    out = cli("retry", "--status", "killed", "--dry-run").out
    assert out == "would have retried 3 tasks (killed)\n"
    assert cli.status() == {"killed": 3, "pending": 1}
    out = cli("retry", "--status", "killed", "--queue", "jobs:send", "--yes").out
    assert out == "retried 3 tasks in queue 'jobs:send'\n"
    assert cli.status() == {"pending": 4}
    assert cli("cancel", "--queue", "other", "--yes").out == "cancelled 0 tasks in queue 'other'\n"
    assert cli("cancel", "--status", "pending", "--yes").out == "cancelled 4 tasks\n"
    assert cli.json("show", later)["status"] == "cancelled"
    err = cli("retry", "--status", "done", code=2).err
    assert "cannot retry done tasks: only failed, killed" in err
    assert "give a task id, or --status" in cli("cancel", code=2).err


def test_purge_with_filters(cli: Cli) -> None:
    cli.push("jobs:send", '{"to": "abort"}')
    for n in range(2):
        cli.push("jobs:send", f'{{"to": "u{n}"}}')
    cli("worker", "jobs:send", "--burst")
    assert cli.status() == {"done": 2, "killed": 1}
    assert cli("purge", "--dry-run").out == "would purge 3 tasks (done, killed, cancelled)\n"
    assert cli("purge", "--older-than", "1h", "--dry-run").out.startswith("would purge 0 tasks")
    out = cli("purge", "--status", "killed", "--queue", "jobs:send", "--dry-run").out
    assert out == "would purge 1 task (killed) in queue 'jobs:send'\n"
    assert cli("purge", "--queue", "other", "--yes").out == "purged 0 tasks in queue 'other'\n"
    out = cli("purge", "--status", "killed", "--queue", "jobs:send", "--yes").out
    assert out == "purged 1 task in queue 'jobs:send'\n"
    assert cli.status() == {"done": 2}
    assert cli("purge", "--status", "running", code=2).err.endswith(
        "cannot purge running tasks: only done, killed, cancelled\n"
    )
    assert cli("purge").out == "purged 2 tasks\n"  # no terminal: no question
    assert cli.status() == {}


def test_healthcheck_and_read_only_commands(cli: Cli) -> None:
    for argv in (["healthcheck"], ["status"], ["tasks"], ["show", "X"], ["workers"], ["paused"]):
        err = cli(*argv, code=7).err
        assert err.startswith("trioqueue: error: no trioqueue store at 'sqlite:///q.db' yet")
    assert not (cli.root / "q.db").exists()  # none of them wrote
    cli("migrate")
    from trioqueue.backends._sqlite_schema import SCHEMA_VERSION

    want = f"ok: sqlite, schema version {SCHEMA_VERSION}, 0 queues\n"
    assert cli("healthcheck").out == want
    assert cli("healthcheck", "--backend", "memory://").out == "ok: memory, 0 queues\n"
    err = cli("healthcheck", "--backend", "postgresql://postgres@127.0.0.1:1/x", "--wait", "0",
              code=3).err  # fmt: skip
    assert err.startswith("trioqueue: error: cannot open backend")


def test_migrate_sql_builds_a_store_that_the_commands_accept(cli: Cli) -> None:
    script = cli("migrate", "--sql").out
    assert "CREATE TABLE" in script and script.rstrip().endswith("COMMIT;")
    assert not (cli.root / "q.db").exists()  # printing touches nothing
    conn = sqlite3.connect(cli.root / "q.db", isolation_level=None)
    conn.executescript(script)
    conn.close()
    assert cli("healthcheck").out.startswith("ok: sqlite, schema version ")
    task_id = cli.push("jobs:send", '{"to": "a"}')
    assert cli.json("show", task_id)["status"] == "pending"
    assert "no SQL migrations" in cli("migrate", "--sql", "--backend", "memory://", code=2).err


def test_the_missing_extra_is_named() -> None:
    exc = ModuleNotFoundError("No module named 'psycopg'", name="psycopg")
    assert install_hint(exc) == " (pip install 'trioqueue[postgres]')"
    assert install_hint(ModuleNotFoundError("x", name="yaml")) == ""


@pytest.fixture
def pg_url() -> Iterator[str]:
    from pg_support import fresh_database

    with fresh_database() as url:
        yield url


@pytest.mark.postgres
def test_postgres_options_flags_url_and_sql(
    cli: Cli, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIOQUEUE_BACKEND", pg_url)
    # An empty database: read-only commands say so and create nothing.
    assert "no trioqueue store" in cli("status", code=7).err
    assert "no trioqueue store" in cli("healthcheck", code=7).err
    with psycopg.connect(pg_url) as conn:
        found = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'trioqueue'")
        assert found.fetchone() == (0,)
    # The DBA's script, run by hand, makes a store the commands accept.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(cli("migrate", "--sql", "--schema", "jobs_dba").out)
    url = f"{pg_url}?schema=jobs_dba&listen=false&pool_size=2&application_name=tq"
    assert cli("healthcheck", "--backend", url).out.startswith("ok: postgresql, schema version")
    # Options in the URL are trioqueue's; libpq sees only its own (application_name).
    task_id = cli.push("jobs:send", '{"to": "a"}', "--backend", url, "--no-migrate")
    err = cli("worker", "jobs:send", "--burst", "--backend", url, "--no-listen",
              "--pool-size", "1").err  # fmt: skip
    assert "done 1, failed 0, killed 0" in err
    assert cli.json("show", task_id, "--schema", "jobs_dba")["status"] == "done"
    err = cli("push", "jobs:send", '{"to": "a"}', "--no-migrate", "--schema", "other", code=3).err
    assert "run `trioqueue migrate`" in err


def _store_finished(url: str, queue: str, n: int, status: Status) -> None:
    """Store ``n`` tasks of ``queue`` that ended in ``status`` (a final one)."""

    async def fill() -> None:
        async with PostgresBackend.open(url, queue=queue) as backend:
            ids = await backend.push_bulk([{"to": f"u{i}"} for i in range(n)])
            claimed = await backend.driver.claim(queue, n, "tok", 3600.0)
            assert len(claimed) == n
            await backend.driver.settle([Outcome(str(id), status) for id in ids], "tok")

    trio.run(fill)


@pytest.mark.postgres
@pytest.mark.seconds
def test_postgres_purge_and_retry_of_a_queue_past_one_notification(
    cli: Cli, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,000 ids are far more than one NOTIFY's 8,000 bytes: the commands work in pages.
    url = f"{pg_url}?schema=bulk_ops"
    monkeypatch.setenv("TRIOQUEUE_BACKEND", url)
    _store_finished(url, "jobs:send", 2000, Status.DONE)
    _store_finished(url, "jobs:other", 1200, Status.KILLED)
    out = cli("purge", "--queue", "jobs:send", "--older-than", "0", "--dry-run").out
    assert out == "would purge 2000 tasks (done, killed, cancelled) in queue 'jobs:send'\n"
    out = cli("purge", "--queue", "jobs:send", "--older-than", "0", "--yes").out
    assert out == "purged 2000 tasks in queue 'jobs:send'\n"
    assert cli.status() == {"killed": 1200}
    out = cli("retry", "--queue", "jobs:other", "--yes").out
    assert out == "retried 1200 tasks in queue 'jobs:other'\n"
    out = cli("cancel", "--status", "pending", "--yes").out
    assert out == "cancelled 1200 tasks\n"
    out = cli("purge", "--status", "cancelled", "--older-than", "0", "--yes").out
    assert out == "purged 1200 tasks\n"
    assert cli.status() == {}
