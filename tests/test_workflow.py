"""Workflows and DAGs on every backend: steps, joins, map fan-out, failure and cancel."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from backend_factories import Factory

import trioqueue as tq
from trioqueue import DagFlow, Status, WorkerBuilder, Workflow


async def parse(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


async def total(xs: list[int]) -> int:
    return sum(xs)


async def describe(n: int) -> str:
    return f"total={n}"


async def run_flow(b: tq.Backend, flow: tq.Workflow | tq.DagFlow, args: Any, **opts: Any) -> Any:
    """Serve ``flow`` until the run pushed with ``args`` ends; return (run id, result or error)."""
    w = WorkerBuilder("flow").backend(b).concurrency(8).build(flow)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.serve)
        run_id = await flow.push(b, args, **opts)
        try:
            return run_id, await b.wait_result(run_id)
        except (tq.TaskFailed, tq.TaskCancelled) as exc:
            return run_id, exc
        finally:
            w.stop()


@pytest.mark.seconds
async def test_a_three_step_typed_workflow_runs_in_order_with_its_delay(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    flow = Workflow("sum").then(parse).then(total).delay_for(30).then(describe)
    async with open_backend() as b:
        run_id, result = await run_flow(b, flow, "1,2,3,4")
        assert result == "total=10"
        run = await flow.get_run(b, run_id)
        assert run.status is Status.DONE
        assert list(run.nodes) == ["parse", "total", "describe"]
        assert [t.result for t in run.nodes.values()] == [[1, 2, 3, 4], 10, "total=10"]
        assert all(t.status is Status.DONE and t.attempts == 1 for t in run.nodes.values())
        ended, began = run.nodes["total"].finished_at, run.nodes["describe"].started_at
        assert ended is not None and began is not None
        assert (began - ended).total_seconds() >= 30
        record = await b.get_task(run_id)
        assert record is not None and record.result == "total=10" and record.args == "1,2,3,4"


async def test_a_diamond_joins_once_with_both_results_in_depends_on_order(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    joined: list[tuple[str, int]] = []

    async def root(n: int) -> int:
        return n + 1

    async def slow_left(n: int) -> str:
        await trio.sleep(5)  # ends after the right branch: order must not follow completion
        return f"left{n}"

    async def right(n: int) -> int:
        return n * 10

    async def join(args: tuple[str, int]) -> str:
        joined.append(args)
        return f"{args[0]}|{args[1]}"

    dag = DagFlow("diamond")
    a = dag.node(root)
    left = dag.node(slow_left, depends_on=(a,))
    r = dag.node(right, depends_on=(a,))
    dag.node(join, depends_on=(left, r))
    async with open_backend() as b:
        run_id, result = await run_flow(b, dag, 1)
        assert result == "left2|20"
        assert joined == [("left2", 20)]
        run = await dag.get_run(b, run_id)
        assert {n: t.status for n, t in run.nodes.items()} == dict.fromkeys(
            ["root", "slow_left", "right", "join"], Status.DONE
        )
        assert run.nodes["join"].attempts == 1


async def test_a_map_of_100_items_is_gathered_in_order(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    ended: list[int] = []

    async def spread(n: int) -> list[int]:
        return list(range(n))

    async def square(i: int) -> int:
        for _ in range(7 - i % 7):  # items end out of order
            await trio.lowlevel.checkpoint()
        ended.append(i)
        return i * i

    async def check(squares: list[int]) -> list[int]:
        return squares

    flow = Workflow("squares").then(spread).map(square).then(check)
    async with open_backend() as b:
        run_id, result = await run_flow(b, flow, 100)
        assert result == [i * i for i in range(100)]
        assert sorted(ended) == list(range(100)) and ended != sorted(ended)
        run = await flow.get_run(b, run_id)
        items = [k for k in run.nodes if k.startswith("square/")]
        assert len(items) == 100
        assert run.nodes["check"].attempts == 1


async def test_a_map_at_the_end_gives_the_list_and_several_sinks_give_a_dict(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    async def double(i: int) -> int:
        return 2 * i

    async def upper(s: str) -> str:
        return s.upper()

    async def length(s: str) -> int:
        return len(s)

    flow = Workflow("doubles").map(double)
    dag = DagFlow("two-sinks")
    dag.node(upper)
    dag.node(length)
    async with open_backend() as b:
        assert (await run_flow(b, flow, [1, 2, 3]))[1] == [2, 4, 6]
        assert (await run_flow(b, flow, []))[1] == []
        assert (await run_flow(b, dag, "abc"))[1] == {"upper": "ABC", "length": 3}


async def test_a_killed_node_ends_the_run_naming_it_and_nothing_after_it_is_created(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    blocked = trio.Event()

    async def bad(n: int) -> int:
        raise ValueError(f"no {n}")

    async def waits(n: int) -> int:
        blocked.set()
        await trio.sleep_forever()
        return n  # pragma: no cover

    async def after(args: tuple[int, int]) -> int:
        return sum(args)  # pragma: no cover - never created

    dag = DagFlow("failing")
    a = dag.node(bad, max_attempts=2)
    w = dag.node(waits)
    dag.node(after, depends_on=(a, w))
    async with open_backend() as b:
        run_id, error = await run_flow(b, dag, 3)
        assert isinstance(error, tq.TaskFailed)
        assert error.task.status is Status.KILLED
        assert error.task.last_error == "node 'bad' ended killed: ValueError: no 3"
        run = await dag.get_run(b, run_id)
        assert run.nodes["bad"].status is Status.KILLED and run.nodes["bad"].attempts == 2
        assert "after" not in run.nodes
        assert blocked.is_set()
        # The branch still running was cancelled with the run.
        t = await b.get_task(f"{run_id}/waits")
        assert t is not None and t.status is Status.CANCELLED


async def test_cancelling_a_run_cancels_its_running_node_and_creates_nothing_more(
    autojump_clock: trio.abc.Clock, open_backend: Factory
) -> None:
    started = trio.Event()

    async def first(n: int) -> int:
        return n

    async def hangs(n: int) -> int:
        started.set()
        await trio.sleep_forever()
        return n  # pragma: no cover

    async def last(n: int) -> int:
        return n  # pragma: no cover - never created

    flow = Workflow("cancelled").then(first).then(hangs).then(last)
    async with open_backend() as b:
        w = WorkerBuilder("flow").backend(b).build(flow)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            run_id = await flow.push(b, 5)
            await started.wait()
            assert await b.cancel_task(run_id)
            with pytest.raises(tq.TaskCancelled):
                await b.wait_result(run_id)
            with pytest.raises(tq.TaskCancelled):
                await b.wait_result(f"{run_id}/hangs")
            w.stop()
        run = await flow.get_run(b, run_id)
        assert run.status is Status.CANCELLED
        assert run.nodes["first"].status is Status.DONE
        assert run.nodes["hangs"].status is Status.CANCELLED
        assert "last" not in run.nodes
        assert not await b.cancel_task(run_id)
