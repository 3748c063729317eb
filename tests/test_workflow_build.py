"""Defining flows: validation, DOT, the errors of ``build`` and of ``push`` (memory backend)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio

import trioqueue as tq
from trioqueue import DagFlow, Data, FlowError, Status, WorkerBuilder, Workflow


@dataclass
class Config:
    factor: int


async def parse(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


async def scale(n: int, config: Data[Config]) -> int:
    return n * config.factor


async def show(n: int) -> str:
    return str(n)


def build(backend: tq.Backend, flow: tq.Workflow | tq.DagFlow) -> tq.Worker:
    return WorkerBuilder("w").backend(backend).data(Config(3)).build(flow)


async def test_a_step_whose_args_cannot_be_resolved_is_named(
    memory_backend: tq.MemoryBackend,
) -> None:
    async def needs(n: int, db: dict[str, int]) -> int:
        return n  # pragma: no cover

    flow = Workflow("w").then(parse).map(needs)
    with pytest.raises(FlowError) as info:
        build(memory_backend, flow)
    message = str(info.value)
    assert message.startswith("flow 'w', node 'needs': parameter 'db' of handler ")
    assert "which a worker cannot provide" in message
    assert isinstance(info.value, tq.HandlerError)


async def test_a_type_mismatch_between_steps_names_both_and_the_types(
    memory_backend: tq.MemoryBackend,
) -> None:
    with pytest.raises(FlowError, match=r"node 'scale' takes args of type int, but node 'show' "):
        build(memory_backend, Workflow("m").then(show).then(scale))
    with pytest.raises(FlowError, match=r"map node 'show' needs a list, but node 'scale' returns"):
        build(memory_backend, Workflow("m2").then(scale).map(show))
    with pytest.raises(
        FlowError, match=r"node 'show' takes args of type int, but it gets the list"
    ):
        build(memory_backend, Workflow("m3").then(parse).map(scale).then(show))

    async def pair(args: tuple[str, int]) -> str:
        return args[0]  # pragma: no cover

    dag = DagFlow("d")
    a, b = dag.node(scale), dag.node(show)
    dag.node(pair, depends_on=(a, b))  # (int, str) given to (str, int)
    with pytest.raises(FlowError, match=r"node 'pair' takes args of type tuple\[str, int\]"):
        build(memory_backend, dag)

    async def not_a_tuple(args: int) -> int:
        return args  # pragma: no cover

    dag2 = DagFlow("d2")
    x, y = dag2.node(scale), dag2.node(scale, name="again")
    dag2.node(not_a_tuple, depends_on=(x, y))
    with pytest.raises(FlowError, match="tuple"):
        build(memory_backend, dag2)
    # Compatible shapes pass: int into float, a list into a Sequence, unannotated anything.
    ok = Workflow("ok").then(scale).then(_takes_float).then(_untyped)
    assert build(memory_backend, ok).concurrency >= 1


async def _takes_float(x: float) -> list[float]:
    return [x]


async def _untyped(x):  # type: ignore[no-untyped-def]
    return x


def test_validate_names_cycles_unknown_nodes_and_duplicates() -> None:
    dag = DagFlow("loop")
    dag.node(show, name="a", depends_on=("c",))
    dag.node(show, name="b", depends_on=("a",))
    dag.node(show, name="c", depends_on=("b",))
    with pytest.raises(FlowError, match=r"cycle: a -> c -> b -> a"):
        dag.validate()
    other = DagFlow("bad")
    other.node(show, name="a", depends_on=("ghost",))
    other.node(show, name="a")
    with pytest.raises(FlowError) as info:
        other.validate()
    assert "node 'a' depends on unknown node 'ghost'" in str(info.value)
    assert "node 'a' is defined twice" in str(info.value)
    with pytest.raises(FlowError, match="has no node"):
        DagFlow("empty").validate()
    with pytest.raises(FlowError, match="delay_for"):
        Workflow("late").then(show).delay_for(5).validate()
    with pytest.raises(FlowError, match="without '/'"):
        DagFlow("x").node(show, name="a/b")


def test_to_dot_draws_nodes_and_edges() -> None:
    flow = Workflow("pipe").then(parse).map(scale).delay_for(2).then(show)
    dot = flow.to_dot()
    assert dot.startswith('digraph "pipe" {')
    assert '"scale" [label="scale" shape="box3d"];' in dot
    assert '"show" [label="show\\n(after 2s)"];' in dot
    assert '"parse" -> "scale";' in dot and '"scale" -> "show";' in dot
    assert [n.name for n in flow.nodes] == ["parse", "scale", "show"]


async def test_push_refuses_bad_options_and_stores_nothing(
    memory_backend: tq.MemoryBackend,
) -> None:
    flow = Workflow("p").map(scale)
    with pytest.raises(TypeError, match="map node 'scale' needs a list, the run args gave int"):
        await flow.push(memory_backend, 5)
    with pytest.raises(ValueError, match="if_exists"):
        await flow.push(memory_backend, [1], if_exists="replace_finished")
    with pytest.raises(ValueError, match="reserved"):
        await flow.push(memory_backend, [1], meta={"trioqueue_run": "x"})
    with pytest.raises(ValueError, match="run id"):
        await flow.push(memory_backend, [1], id="x" * 250)
    with pytest.raises(tq.CodecError):
        await flow.push(memory_backend, [object()])
    assert await memory_backend.counts() == {}


async def test_a_run_id_is_idempotent_and_raise_reports_it(
    memory_backend: tq.MemoryBackend,
) -> None:
    flow = Workflow("p").then(scale).then(show)
    assert await flow.push(memory_backend, 2, id="run-1", meta={"who": "me"}) == "run-1"
    assert await flow.push(memory_backend, 9, id="run-1") == "run-1"
    with pytest.raises(tq.DuplicateTask):
        await flow.push(memory_backend, 9, id="run-1", if_exists="raise")
    run = await flow.get_run(memory_backend, "run-1")
    assert run.status is Status.RUNNING and list(run.nodes) == ["scale"]
    assert run.nodes["scale"].meta["who"] == "me"
    with pytest.raises(LookupError):
        await flow.get_run(memory_backend, "nope")


async def test_a_result_a_map_cannot_split_kills_the_node_and_the_run(
    autojump_clock: trio.abc.Clock, memory_backend: tq.MemoryBackend
) -> None:
    async def gives_anything(n: int):  # type: ignore[no-untyped-def]
        return n

    flow = Workflow("split").then(gives_anything).map(show)
    w = build(memory_backend, flow)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.serve)
        run_id = await flow.push(memory_backend, 4)
        with pytest.raises(tq.TaskFailed, match="map node 'show' needs a list"):
            await memory_backend.wait_result(run_id)
        w.stop()


async def test_a_flow_worker_refuses_a_driver_without_workflows() -> None:
    from trioqueue.backends.memory import MemoryDriver

    class Plain(MemoryDriver):
        advance = None  # type: ignore[assignment]

    backend = tq.Backend(Plain())
    with pytest.raises(FlowError, match="does not implement workflows"):
        build(backend, Workflow("x").then(show))


async def test_tasks_pushed_by_hand_to_a_flow_queue_are_killed_and_the_worker_goes_on(
    autojump_clock: trio.abc.Clock, memory_backend: tq.MemoryBackend
) -> None:
    from trioqueue._flow._records import value_frame

    flow = Workflow("hand").then(scale).then(show)
    plain = await memory_backend.push(5)
    framed = tq.StoredTask("framed", memory_backend.queue, value_frame("scale", b"5"))
    await memory_backend.driver.insert([framed])
    w = build(memory_backend, flow)
    async with trio.open_nursery() as nursery:
        await nursery.start(w.serve)
        with pytest.raises(tq.TaskFailed, match="not a workflow node's"):
            await memory_backend.wait_result(plain)
        with pytest.raises(tq.TaskFailed, match="not a node of a run of flow 'hand'"):
            await memory_backend.wait_result("framed")
        run_id = await flow.push(memory_backend, 2)
        assert await memory_backend.wait_result(run_id) == "6"
        w.stop()
