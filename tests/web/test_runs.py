"""The board and workflow runs: a run record's page offers a resume, not a task retry, and
the bulk Retry of killed tasks recovers a killed run as ``trioqueue retry`` does."""

from __future__ import annotations

import pytest
import trio
from backend_factories import Factory
from web.conftest import BoardClient, client_of

import trioqueue as tq
from trioqueue import DagFlow, Status, WorkerBuilder


def recover_dag(fixed: trio.Event) -> DagFlow:
    async def steady(n: int) -> int:
        return n + 1

    async def flaky(n: int) -> int:
        if not fixed.is_set():
            raise RuntimeError("not fixed yet")
        return n * 10

    async def report(parts: tuple[int, int]) -> str:
        return f"{parts[0]}+{parts[1]}"

    dag = DagFlow("recover")
    s = dag.node(steady)
    f = dag.node(flaky, depends_on=(s,), max_attempts=2)
    dag.node(report, depends_on=(s, f))
    return dag


@pytest.mark.seconds
async def test_bulk_retry_of_killed_tasks_resumes_a_killed_run_to_its_result(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    fixed = trio.Event()
    dag = recover_dag(fixed)
    async with open_backend(queue="reports") as b, client_of(b) as http:
        board = BoardClient(b, None, http)  # type: ignore[arg-type]
        w = WorkerBuilder("flow").backend(b).build(dag)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            run_id = await dag.push(b, 3)
            with pytest.raises(tq.TaskFailed):
                await b.wait_result(run_id)
            fixed.set()
            r = await board.post("/bulk", action="retry", queue="reports", status="killed")
            assert '<strong id="bulk-count">2</strong>' in r.text  # the node and the run record
            r = await board.post(
                "/bulk", action="retry", queue="reports", status="killed", confirm=2
            )
            with trio.fail_after(60):
                assert await b.wait_result(run_id) == "4+40"
            w.stop()
        assert await b.list_tasks(status=Status.KILLED) == []  # none as undecodable
        assert r.status_code == 303 and "n=1" in r.headers["location"]  # the node
        page = await http.get("/task", params={"id": run_id})
        assert 'id="retry"' not in page.text  # a finished run has nothing to retry


async def test_a_run_records_page_offers_a_resume_only_once_the_run_ended(
    autojump_clock: trio.abc.Clock,
) -> None:
    fixed = trio.Event()
    dag = recover_dag(fixed)
    async with tq.MemoryBackend.open() as b, client_of(b) as http:
        run_id = await dag.push(b, 3)
        page = await http.get("/task", params={"id": run_id})
        assert ">running<" in page.text and 'id="retry"' not in page.text
        w = WorkerBuilder("flow").backend(b).build(dag)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            with pytest.raises(tq.TaskFailed):
                await b.wait_result(run_id)
            w.stop()
        page = await http.get("/task", params={"id": run_id})
        assert 'id="retry">Resume run</button>' in page.text
        page = await http.get("/task", params={"id": f"{run_id}/flaky"})
        assert 'id="retry">Retry and resume its run</button>' in page.text
