"""Defining workflows: ``Workflow`` (steps in a line) and ``DagFlow`` (a DAG of nodes).

Both describe a graph of ``NodeSpec``; ``Flow`` holds what they share:
``validate``, ``to_dot``, ``push`` and ``get_run``. ``_plan.py`` compiles the
graph for a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._durations import seconds
from ._spec import RESULT_NODE, FlowError, NodeSpec

if TYPE_CHECKING:
    from .._backend import Backend
    from .._task import TaskId
    from ._run import FlowRun

__all__ = ["DagFlow", "Flow", "FlowError", "FlowNode", "NodeSpec", "Workflow"]


@dataclass(frozen=True, slots=True)
class FlowNode:
    """A handle on a node of a ``DagFlow``, for ``depends_on`` (its ``name`` works too)."""

    name: str


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or len(name) > 100:
        raise FlowError(f"{what} name must be 1 to 100 characters without '/', got {name!r}")
    return name


def _default_name(handler: Any) -> str:
    name = getattr(handler, "__name__", None) or type(handler).__name__
    return str(name)


class Flow:
    """What ``Workflow`` and ``DagFlow`` share: a named graph of nodes.

    A flow goes to ``WorkerBuilder.build(flow)`` like a handler; a run starts
    with ``run_id = await flow.push(backend, args)`` and its result comes from
    ``backend.wait_result(run_id)``.
    """

    def __init__(self, name: str) -> None:
        self.name = _check_name(name, "a flow's")
        self._nodes: dict[str, NodeSpec] = {}
        self._problems: list[str] = []

    @property
    def nodes(self) -> tuple[NodeSpec, ...]:
        """The nodes, in the order they were added."""
        return tuple(self._nodes.values())

    def _add(self, spec: NodeSpec) -> None:
        if spec.name == RESULT_NODE:
            self._problems.append(f"node name {RESULT_NODE!r} is reserved")
        elif spec.name in self._nodes:
            self._problems.append(f"node {spec.name!r} is defined twice")
            return
        self._nodes[spec.name] = spec

    def _unique(self, handler: Any, name: str | None) -> str:
        if name is not None:
            return _check_name(name, "a node's")
        base = _check_name(_default_name(handler), "a node's")
        if base not in self._nodes:
            return base
        n = 2
        while f"{base}_{n}" in self._nodes:
            n += 1
        return f"{base}_{n}"

    def sinks(self) -> list[str]:
        """Return the names of the nodes no other node depends on, in order."""
        used = {d for spec in self._nodes.values() for d in spec.depends_on}
        return [name for name in self._nodes if name not in used]

    def validate(self) -> None:
        """Check the graph: known dependencies, no cycle, map nodes with one input.

        Raises:
          FlowError: naming every problem found (a cycle is shown as its path).
        """
        problems = list(self._problems)
        if not self._nodes:
            problems.append("it has no node")
        for spec in self._nodes.values():
            for dep in spec.depends_on:
                if dep not in self._nodes:
                    problems.append(f"node {spec.name!r} depends on unknown node {dep!r}")
            if len(set(spec.depends_on)) != len(spec.depends_on):
                problems.append(f"node {spec.name!r} names a dependency twice")
            if spec.map and len(spec.depends_on) > 1:
                problems.append(f"map node {spec.name!r} must have one dependency")
            for dep in spec.depends_on:
                d = self._nodes.get(dep)
                if d is not None and d.map and len(spec.depends_on) > 1:
                    problems.append(
                        f"node {spec.name!r} joins map node {dep!r} with others: "
                        f"a map's results go to a node that depends on it alone"
                    )
        cycle = self._cycle()
        if cycle:
            problems.append("it has a cycle: " + " -> ".join(cycle))
        elif self._nodes and not self.sinks():
            problems.append("no node is a sink (every node has a dependent)")
        if problems:
            raise FlowError(f"flow {self.name!r}: " + "; ".join(problems))

    def _cycle(self) -> list[str] | None:
        state: dict[str, int] = {}
        path: list[str] = []

        def visit(name: str) -> list[str] | None:
            state[name] = 1
            path.append(name)
            for dep in self._nodes[name].depends_on:
                if dep not in self._nodes:
                    continue
                if state.get(dep) == 1:
                    return [*path[path.index(dep) :], dep]
                if dep not in state and (found := visit(dep)) is not None:
                    return found
            path.pop()
            state[name] = 2
            return None

        for name in self._nodes:
            if name not in state and (found := visit(name)) is not None:
                return found
        return None

    def to_dot(self) -> str:
        """Return the graph in Graphviz DOT (map nodes drawn as stacks)."""
        lines = [f"digraph {_quote(self.name)} {{", "  rankdir=LR;"]
        for spec in self._nodes.values():
            attrs = ' shape="box3d"' if spec.map else ""
            label = spec.name if not spec.delay else f"{spec.name}\n(after {spec.delay:g}s)"
            lines.append(f"  {_quote(spec.name)} [label={_quote(label)}{attrs}];")
        for spec in self._nodes.values():
            for dep in spec.depends_on:
                lines.append(f"  {_quote(dep)} -> {_quote(spec.name)};")
        lines.append("}")
        return "\n".join(lines) + "\n"

    async def push(self, backend: Backend, args: Any, **push_options: Any) -> TaskId:
        """Start a run: store its run record and its root tasks in one insert.

        Args:
          backend: Where the run goes (its queue is the workers').
          args: The roots' args (a list, for a root that is a ``map``).
          **push_options: As for ``push``: ``delay``, ``run_at``, ``priority``,
            ``max_attempts`` (each node's, unless the node sets its own),
            ``id`` (the run id; a taken id stores nothing new), ``meta``
            (given to every task of the run), ``if_exists`` (``"skip"`` or
            ``"raise"``).

        Returns:
          The run id, for ``wait_result``, ``watch``, ``get_task``,
          ``cancel_task`` and ``get_run``.

        Raises:
          FlowError: if the flow is not valid.
          CodecError, DuplicateTask, PushError, TypeError, ValueError: as ``push``.
        """
        from ._run import push_run

        return await push_run(self, backend, args, push_options)

    async def get_run(self, backend: Backend, run_id: str) -> FlowRun:
        """Return the run record and the tasks of the run's nodes (see ``FlowRun``).

        Raises:
          LookupError: no such run.
        """
        from ._run import read_run

        return await read_run(self, backend, run_id)

    async def __call__(self, task: Any) -> Any:
        """Refuse to run as a service: a flow runs through ``WorkerBuilder.build(flow)``.

        A flow is callable only so that whatever accepts a handler
        (``trioqueue worker module:flow``) accepts a flow too.

        Raises:
          FlowError: always.
        """
        raise FlowError(f"flow {self.name!r} is not a service: give it to WorkerBuilder.build")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} nodes={list(self._nodes)}>"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


class Workflow(Flow):
    """Steps in a line: each step's result is the next step's args.

    Example::

        flow = Workflow("report").then(fetch).delay_for(60).then(summarize)
        worker = WorkerBuilder("w").backend(backend).build(flow)
        run_id = await flow.push(backend, "https://example.org")
        summary = await backend.wait_result(run_id)

    Each step is a handler with the usual injection (``Data[T]``,
    ``WorkerContext``, ``Task``...). A step's return annotation and the next
    step's args annotation are checked at ``build``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._last: str | None = None
        self._delay = 0.0

    def _step(self, handler: Any, name: str | None, map: bool, max_attempts: int | None) -> None:
        spec = NodeSpec(
            self._unique(handler, name),
            handler,
            () if self._last is None else (self._last,),
            map,
            self._delay,
            max_attempts,
        )
        self._add(spec)
        self._last, self._delay = spec.name, 0.0

    def then(
        self, step: Any, *, name: str | None = None, max_attempts: int | None = None
    ) -> Workflow:
        """Add a step that takes the previous step's result (the run's args, first).

        Args:
          step: An async function or service.
          name: The step's name (default: the function's, made unique).
          max_attempts: Its attempts allowed (default: the run's).
        """
        self._step(step, name, False, max_attempts)
        return self

    def map(
        self, step: Any, *, name: str | None = None, max_attempts: int | None = None
    ) -> Workflow:
        """Add a step that runs once per item of the previous result (a list), in parallel.

        The next step gets the list of the results in the items' order (and,
        when the map is the last step, that list is the run's result). Items
        run as separate tasks, each retried by its own attempts.
        """
        self._step(step, name, True, max_attempts)
        return self

    def delay_for(self, seconds_: float) -> Workflow:
        """Wait ``seconds_`` between the previous step's end and the next step's start."""
        self._delay += seconds("delay_for", seconds_)
        return self

    def validate(self) -> None:
        """Check the steps (see ``Flow.validate``); a trailing ``delay_for`` is refused."""
        if self._delay:
            self._problems.append("delay_for() is not followed by a step")
        try:
            super().validate()
        finally:
            if self._delay:
                self._problems.pop()


class DagFlow(Flow):
    """A DAG of nodes: roots get the run's args; a node gets its dependencies' results.

    Example::

        dag = DagFlow("etl")
        a = dag.node(extract)
        b = dag.node(clean, depends_on=(a,))
        c = dag.node(count, depends_on=(a,))
        dag.node(report, depends_on=(b, c))  # gets (clean's, count's) results

    A node with one dependency gets its result as args; a node with several
    gets a tuple of their results in ``depends_on`` order, once all are DONE.
    The run's result is the sink's (a dict by node name with several sinks).
    """

    def node(
        self,
        handler: Any,
        *,
        name: str | None = None,
        depends_on: Iterable[FlowNode | str] = (),
        delay: float = 0.0,
        max_attempts: int | None = None,
    ) -> FlowNode:
        """Add a node; return its handle for other nodes' ``depends_on``.

        Args:
          handler: An async function or service.
          name: Its name (default: the function's, made unique).
          depends_on: Nodes (handles or names) whose results it takes.
          delay: Seconds between its inputs being ready and its run.
          max_attempts: Its attempts allowed (default: the run's).
        """
        return self._node(handler, name, depends_on, False, delay, max_attempts)

    def map(
        self,
        handler: Any,
        *,
        depends_on: FlowNode | str,
        name: str | None = None,
        max_attempts: int | None = None,
    ) -> FlowNode:
        """Add a node that runs once per item of its one dependency's result (a list).

        Its dependents get the list of the results, in the items' order.
        """
        return self._node(handler, name, (depends_on,), True, 0.0, max_attempts)

    def _node(
        self,
        handler: Any,
        name: str | None,
        depends_on: Iterable[FlowNode | str],
        map: bool,
        delay: float,
        max_attempts: int | None,
    ) -> FlowNode:
        if isinstance(depends_on, FlowNode | str):
            depends_on = (depends_on,)
        deps = tuple(d.name if isinstance(d, FlowNode) else str(d) for d in depends_on)
        spec = NodeSpec(
            self._unique(handler, name), handler, deps, map, seconds("delay", delay), max_attempts
        )
        self._add(spec)
        return FlowNode(spec.name)
