"""Recovering a killed or cancelled workflow run: a retry resumes it, never corrupts it."""

from __future__ import annotations

import pytest
import trio
from backend_factories import Factory

import trioqueue as tq
from trioqueue import DagFlow, Status, WorkerBuilder, Workflow


class Fix:
    """The cause of a node's failures, fixed from the test."""

    def __init__(self) -> None:
        self.fixed = False

    async def check(self, n: int) -> int:
        if not self.fixed:
            raise RuntimeError(f"not fixed yet ({n})")
        return n * 10


def recover_dag(fix: Fix) -> DagFlow:
    """split -> steady -> flaky, and report joins (steady, flaky): steady is DONE before."""

    async def split(n: int) -> int:
        return n

    async def steady(n: int) -> int:
        return n + 1

    async def flaky(n: int) -> int:
        return await fix.check(n)

    async def report(parts: tuple[int, int]) -> str:
        return f"{parts[0]}+{parts[1]}"

    dag = DagFlow("recover")
    a = dag.node(split)
    s = dag.node(steady, depends_on=(a,))
    f = dag.node(flaky, depends_on=(s,), max_attempts=2)
    dag.node(report, depends_on=(s, f))
    return dag


async def no_task_killed(b: tq.Backend) -> None:
    killed = await b.list_tasks(status=Status.KILLED)
    assert killed == [], [(t.id, t.last_error) for t in killed]


@pytest.mark.seconds
async def test_retrying_the_killed_node_of_a_killed_dag_resumes_it_to_its_full_result(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    fix = Fix()
    dag = recover_dag(fix)
    async with open_backend() as b:
        w = WorkerBuilder("flow").backend(b).concurrency(4).build(dag)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            run_id = await dag.push(b, 3)
            with pytest.raises(tq.TaskFailed, match="node 'flaky' ended killed"):
                await b.wait_result(run_id)
            fix.fixed = True
            assert await b.retry_task(f"{run_id}/flaky")
            with trio.fail_after(60):
                assert await b.wait_result(run_id) == "4+40"
            w.stop()
        run = await dag.get_run(b, run_id)
        assert run.status is Status.DONE
        assert {n: t.status for n, t in run.nodes.items()} == dict.fromkeys(
            ["split", "steady", "flaky", "report"], Status.DONE
        )
        assert run.nodes["steady"].attempts == 1  # finished nodes are not run again
        await no_task_killed(b)


@pytest.mark.seconds
async def test_retrying_a_killed_or_cancelled_run_record_resumes_the_run(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    fix = Fix()
    started = trio.Event()

    async def first(n: int) -> int:
        return n + 1

    async def hangs(n: int) -> int:
        if not fix.fixed:
            started.set()
            await trio.sleep_forever()
        return n

    async def last(n: int) -> int:
        return await fix.check(n)

    flow = Workflow("line").then(first).then(hangs).then(last, max_attempts=1)
    async with open_backend() as b:
        w = WorkerBuilder("flow").backend(b).build(flow)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            run_id = await flow.push(b, 1)
            await started.wait()
            assert not await b.retry_task(run_id)  # a running run is not retried
            assert await b.cancel_task(run_id)
            with pytest.raises(tq.TaskCancelled):
                await b.wait_result(f"{run_id}/hangs")
            fix.fixed = True
            assert await b.retry_task(run_id)  # the cancelled run resumes at `hangs`
            with trio.fail_after(60):
                assert await b.wait_result(run_id) == 20
            w.stop()
        run = await flow.get_run(b, run_id)
        assert [t.status for t in run.nodes.values()] == [Status.DONE] * 3
        assert run.nodes["first"].attempts == 1
        await no_task_killed(b)
