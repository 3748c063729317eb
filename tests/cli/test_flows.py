"""Workflows from the command line: push starts a run; the documented recovery resumes one."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cli.cli_project import Cli

import trioqueue as tq
from trioqueue._cli._handlers import load_handler

FLOWS = textwrap.dedent(
    """
    import pathlib

    from trioqueue import DagFlow, RetryAfter


    async def split(n: int) -> int:
        return n


    async def steady(n: int) -> int:
        return n + 1


    async def flaky(n: int) -> int:
        if not pathlib.Path("fixed").exists():
            raise RetryAfter(0, "the cause is not fixed yet")  # an attempt spent, due at once
        return n * 10


    async def report(parts: tuple[int, int]) -> str:
        return f"{parts[0]}+{parts[1]}"


    dag = DagFlow("recover")
    a = dag.node(split)
    s = dag.node(steady, depends_on=(a,))
    f = dag.node(flaky, depends_on=(s,), max_attempts=2)
    dag.node(report, depends_on=(s, f))
    """
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def flows(
    request: pytest.FixtureRequest, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cli]:
    """The project with ``flows.py``, on a SQLite file or a fresh PostgreSQL database."""
    (cli.root / "flows.py").write_text(FLOWS)
    if request.param == "sqlite":
        yield cli
        return
    from pg_support import fresh_database

    with fresh_database() as url:
        monkeypatch.setenv("TRIOQUEUE_BACKEND", url)
        yield cli


def _push_run(n: int) -> str:
    """Start a run of ``flows:dag`` with the library, as a producer does (``flow.push``)."""
    flow = load_handler("flows:dag")

    async def push() -> str:
        async with tq.open_backend(os.environ["TRIOQUEUE_BACKEND"], queue="flows:dag") as b:
            return str(await flow.push(b, n))

    return trio.run(push)


def _killed(cli: Cli) -> list[tuple[str, str]]:
    return [(t["id"], t["last_error"]) for t in cli.json("tasks", "--status", "killed")]


@pytest.mark.seconds
def test_the_documented_recovery_of_a_killed_run_ends_it_done_with_its_result(flows: Cli) -> None:
    cli = flows
    run_id = _push_run(3)
    assert cli.json("show", run_id)["status"] == "running"
    cli("worker", "flows:dag", "--burst")
    run = cli.json("show", run_id)
    assert run["status"] == "killed" and "node 'flaky' ended killed" in run["last_error"]
    assert [id for id, _ in _killed(cli)] == [f"{run_id}/flaky", run_id]
    Path(cli.root / "fixed").touch()
    out = cli("retry", "--status", "killed", "--queue", "flows:dag").out
    assert cli.json("show", run_id)["status"] == "running"
    cli("worker", "flows:dag", "--burst")
    assert _killed(cli) == []  # nothing killed as an undecodable payload
    assert cli("wait", run_id, "--timeout", "30").out == '"4+40"\n'
    assert out == (
        "retried 1 task in queue 'flows:dag'\n"
        f"resumed workflow run {run_id}: its unfinished nodes run again\n"
    )
    assert cli.json("show", f"{run_id}/report")["status"] == "done"


@pytest.mark.seconds
def test_retry_of_a_run_id_resumes_it_and_a_running_run_is_refused(flows: Cli) -> None:
    cli = flows
    run_id = _push_run(1)
    err = cli("retry", run_id, code=1).err
    assert f"{run_id} is a workflow run (running): only a killed or cancelled run" in err
    cli("worker", "flows:dag", "--burst")
    assert cli.json("show", run_id)["status"] == "killed"
    Path(cli.root / "fixed").touch()
    out = cli("retry", run_id).out
    resumed = f"resumed workflow run {run_id}: its unfinished nodes run again"
    assert out == f"retried {run_id}\n{resumed}\n"
    cli("worker", "flows:dag", "--burst")
    assert cli("wait", run_id, "--timeout", "30").out == '"2+20"\n'


def test_push_of_a_flow_starts_a_run_or_refuses_with_a_usage_error(cli: Cli) -> None:
    (cli.root / "flows.py").write_text(FLOWS)
    Path(cli.root / "fixed").touch()
    run_id = cli.push("flows:dag", "5", "--id", "run-5")
    assert run_id == "run-5"
    shown = cli.json("show", run_id)
    assert (shown["status"], shown["queue"], shown["args"]) == ("running", "flows:dag", 5)
    assert cli.json("show", f"{run_id}/split")["status"] == "pending"
    err = cli("push", "flows:dag", '"five"', code=2).err
    assert "args do not fit flows:dag (int)" in err
    err = cli("push", "flows:dag", "5", "--id", "run-5", "--if-exists", "replace_finished", code=2)
    assert "a run cannot replace a finished one" in err.err
    assert cli("push", "flows:dag", "5", "--id", "run-5").out.strip() == "run-5"  # skipped
    assert "done 4, failed 0, killed 0" in cli("worker", "flows:dag", "--burst").err
    assert cli("wait", run_id).out == '"6+60"\n'
