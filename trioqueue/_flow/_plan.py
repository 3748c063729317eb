"""A flow compiled for a worker: each node's input, successors, decoder and service.

``compile_plan`` checks the graph and the types between nodes (the errors of
``build``); ``Plan.transition`` turns a node's result into the ``Transition``
the driver writes (what to create next); ``Plan.decode`` reads a node's
payload frame into its typed args.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._codec import Codec
from .._driver import Outcome, StoredTask
from .._errors import CodecError, HandlerError
from .._handler import ServiceBuilder, resolve
from .._service import Layer, Service
from .._task import Status, Task
from ._records import (
    LIST,
    META_ITEM,
    META_NODE,
    META_RUN,
    TUPLE,
    VALUE,
    Join,
    Transition,
    gathered,
    join_payload,
    node_id,
    parse_frame,
    value_frame,
)
from ._spec import RESULT_NODE, FlowError, Graph, NodeSpec
from ._types import UNKNOWN, args_type, element_types, fits, list_item, return_type, show

__all__ = ["META_ATTEMPTS", "NodeCall", "Plan", "Step", "compile_plan"]

#: Meta key of the run's default ``max_attempts`` (for nodes without their own).
META_ATTEMPTS = "trioqueue_attempts"


@dataclass(slots=True, eq=False)
class Step:
    """A compiled node: how its args arrive and what follows it."""

    spec: NodeSpec
    input: bytes  # VALUE, TUPLE or LIST
    takes: Any  # its args type (UNKNOWN when not annotated)
    gives: Any  # its return type (UNKNOWN when not annotated)
    succ: list[str] = field(default_factory=list)
    service: Service[Task[Any], Any] | None = None
    decode: Callable[[Any], Any] | None = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(slots=True, eq=False)
class NodeCall:
    """A node task's args once decoded: which step, and its args."""

    step: Step
    args: Any


def _collect_dict(names: tuple[str, ...]) -> Callable[..., Any]:
    async def result(args: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(names, args, strict=True))

    return result


async def _collect_list(args: list[Any]) -> list[Any]:
    return list(args)


class Plan:
    """A validated flow: its steps by name, its roots and the node whose result is the run's."""

    def __init__(self, flow: Graph, steps: dict[str, Step], final: str) -> None:
        self.flow = flow
        self.name = flow.name
        self.steps = steps
        self.final = final
        self.roots = [s.name for s in steps.values() if not s.spec.depends_on]

    # -- build --

    def bind(
        self, *, data: dict[type, object], context: Any, layers: tuple[Layer, ...], codec: Codec
    ) -> None:
        """Resolve each node's handler (injection, layers) and its args decoder.

        Raises:
          HandlerError: naming the flow, the node and the parameter.
        """
        for step in self.steps.values():
            try:
                inner, tp = resolve(step.spec.handler, data=data, context=context)
            except HandlerError as exc:
                raise FlowError(f"flow {self.name!r}, node {step.name!r}: {exc}") from exc
            step.service = ServiceBuilder(layers).wrap(inner)
            step.decode = self._decoder(step, tp, codec)

    def _decoder(self, step: Step, tp: Any, codec: Codec) -> Callable[[Any], Any]:
        if step.input == VALUE:
            return codec.decoder(tp)
        n = len(step.spec.depends_on) if step.input == TUPLE else None
        types = element_types(UNKNOWN if tp is Any else tp, n)
        if types is None:
            kind = f"a tuple of {n} inputs" if n is not None else "a list of the map's results"
            raise FlowError(
                f"flow {self.name!r}, node {step.name!r}: its args are {kind}, but it is "
                f"annotated {show(tp)}: annotate it as a tuple (or list) of those"
            )
        if isinstance(types, list):
            decoders = [codec.decoder(t) for t in types]
        else:
            one = codec.decoder(types)
            decoders = []
        build = tuple if step.input == TUPLE else list

        def decode(parts: list[bytes | None]) -> Any:
            if decoders and len(decoders) != len(parts):
                raise CodecError(f"node {step.name!r} expects {len(decoders)} inputs")
            out = [
                None if p is None else (decoders[i] if decoders else one)(p)
                for i, p in enumerate(parts)
            ]
            return build(out)

        return decode

    # -- running --

    def decode(self, payload: bytes) -> NodeCall:
        """Read a node task's payload into ``NodeCall`` (the worker's decoder).

        Raises:
          CodecError: not a node of this flow, or args that do not decode.
        """
        try:
            node, kind, body = parse_frame(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CodecError(f"flow {self.name!r}: {exc}") from exc
        step = self.steps.get(node)
        if step is None or step.decode is None:
            raise CodecError(f"flow {self.name!r} has no node {node!r}")
        if (kind == VALUE) != (step.input == VALUE):
            raise CodecError(f"flow {self.name!r}: node {node!r} got inputs of another kind")
        return NodeCall(step, step.decode(body))

    def task(
        self,
        rec: StoredTask,
        node: str,
        payload: bytes,
        run_at: float,
        meta: dict[str, Any],
        item: tuple[int, int] | None = None,
    ) -> StoredTask:
        """Return a new task of ``node`` in the run of ``rec`` (the run record or a node)."""
        spec = self.steps[node].spec
        run = str(meta[META_RUN])
        m = {k: v for k, v in meta.items() if k != META_ITEM}
        m[META_NODE] = node
        if item is not None:
            m[META_ITEM] = list(item)
        default = int(meta.get(META_ATTEMPTS) or rec.max_attempts)
        return StoredTask(
            id=node_id(run, node, None if item is None else item[0]),
            queue=rec.queue,
            payload=payload,
            run_at=run_at,
            priority=rec.priority,
            max_attempts=spec.max_attempts or default,
            meta=m,
        )

    def _feed(
        self,
        rec: StoredTask,
        name: str,
        value: Any,
        encoded: bytes,
        encode: Callable[[Any], bytes],
        now: float,
        spawn: list[StoredTask],
        joins: list[Join],
        of: str | None,
    ) -> None:
        step = self.steps[name]
        meta, delay = rec.meta, step.spec.delay
        run = str(meta[META_RUN])
        if step.spec.map:
            if not isinstance(value, list | tuple):
                raise TypeError(
                    f"map node {name!r} needs a list, "
                    f"{'the run args' if of is None else f'node {of!r}'} gave "
                    f"{type(value).__name__}"
                )
            items = [encode(v) for v in value]
            if not items:  # nothing to map: its dependent gets [] now
                after = self.steps[name].succ[0]
                spawn.append(
                    self.task(
                        rec,
                        after,
                        join_payload(after, True) + gathered([]),
                        now + self.steps[after].spec.delay,
                        meta,
                    )
                )
                return
            n = len(items)
            for i, item in enumerate(items):
                spawn.append(
                    self.task(rec, name, value_frame(name, item), now + delay, meta, (i, n))
                )
        elif step.input == VALUE:
            spawn.append(self.task(rec, name, value_frame(name, encoded), now + delay, meta))
        elif step.input == LIST:
            assert of is not None
            n = int(meta[META_ITEM][1])
            inputs = [node_id(run, of, i) for i in range(n)]
            task = self.task(rec, name, join_payload(name, True), now + delay, meta)
            joins.append(Join(task, inputs))
        else:
            inputs = [node_id(run, d) for d in step.spec.depends_on]
            task = self.task(rec, name, join_payload(name, False), now + delay, meta)
            joins.append(Join(task, inputs))

    def first_tasks(
        self, run_rec: StoredTask, args: Any, encode: Callable[[Any], bytes]
    ) -> list[StoredTask]:
        """Return the first tasks of a run: each root with the run's args (split for a map).

        Raises:
          TypeError: a root is a map and ``args`` is not a list.
          CodecError: an item cannot be encoded.
        """
        spawn: list[StoredTask] = []
        joins: list[Join] = []
        for name in self.roots:
            at = run_rec.run_at
            self._feed(run_rec, name, args, run_rec.payload, encode, at, spawn, joins, None)
        return spawn

    def transition(
        self, rec: StoredTask, result: Any, encode: Callable[[Any], bytes], now: float
    ) -> Outcome:
        """Return what settles node task ``rec`` that returned ``result``: a ``Transition``.

        A result that cannot be encoded, or that a map cannot split, makes a
        KILLED outcome instead (the run then ends, naming the node).
        """
        node = str(rec.meta.get(META_NODE))
        try:
            encoded = encode(result)
            spawn: list[StoredTask] = []
            joins: list[Join] = []
            at = StoredTask(rec.id, rec.queue, b"", run_at=now, priority=rec.priority,
                            max_attempts=rec.max_attempts, meta=rec.meta)  # fmt: skip
            for name in self.steps[node].succ:
                self._feed(at, name, result, encoded, encode, now, spawn, joins, node)
        except (CodecError, TypeError) as exc:
            return Outcome(rec.id, Status.KILLED, error=f"{type(exc).__name__}: {exc}")
        return Transition(
            rec.id,
            Status.DONE,
            encoded,
            run=str(rec.meta[META_RUN]),
            spawn=spawn,
            joins=joins,
            finish=node == self.final,
        )


def _input_of(spec: NodeSpec, specs: dict[str, NodeSpec]) -> bytes:
    if spec.map or len(spec.depends_on) <= 1:
        if len(spec.depends_on) == 1 and specs[spec.depends_on[0]].map:
            return LIST
        return VALUE
    return TUPLE


def compile_plan(flow: Graph) -> Plan:
    """Validate ``flow`` and compile it; check the types between nodes.

    Raises:
      FlowError: the flow is not valid, or a node's args type does not fit
        what its dependencies return (both named, with the types).
    """
    flow.validate()
    specs = {s.name: s for s in flow.nodes}
    sinks = flow.sinks()
    final = sinks[0]
    if len(sinks) > 1:
        specs[RESULT_NODE] = NodeSpec(RESULT_NODE, _collect_dict(tuple(sinks)), tuple(sinks))
        final = RESULT_NODE
    elif specs[final].map:
        specs[RESULT_NODE] = NodeSpec(RESULT_NODE, _collect_list, (final,))
        final = RESULT_NODE
    steps = {
        name: Step(spec, _input_of(spec, specs), args_type(spec.handler), return_type(spec.handler))
        for name, spec in specs.items()
    }
    for step in steps.values():
        for dep in step.spec.depends_on:
            steps[dep].succ.append(step.name)
    for step in steps.values():
        _check_types(flow.name, step, steps)
    return Plan(flow, steps, final)


def _check_types(flow: str, step: Step, steps: dict[str, Step]) -> None:
    deps = [steps[d] for d in step.spec.depends_on]
    if not deps or step.name == RESULT_NODE:
        return
    if step.spec.map:
        (dep,) = deps
        item = list_item(dep.gives)
        if item is None:
            raise FlowError(
                f"flow {flow!r}: map node {step.name!r} needs a list, but node "
                f"{dep.name!r} returns {show(dep.gives)}"
            )
        produced, what = item, f"the items of node {dep.name!r}'s result ({show(dep.gives)})"
    elif step.input == LIST:
        gives = deps[0].gives
        produced = UNKNOWN if gives is UNKNOWN else list.__class_getitem__(gives)
        what = f"the list of map node {deps[0].name!r}'s results ({show(produced)})"
    elif step.input == TUPLE:
        known = [d.gives for d in deps]
        produced = UNKNOWN if UNKNOWN in known else tuple.__class_getitem__(tuple(known))
        what = f"the results of {', '.join(repr(d.name) for d in deps)} ({show(produced)})"
    else:
        produced, what = deps[0].gives, f"node {deps[0].name!r} returns {show(deps[0].gives)}"
    if not fits(produced, step.takes):
        if step.input == VALUE and not step.spec.map:
            detail = what
        else:
            detail = f"it gets {what}"
        raise FlowError(
            f"flow {flow!r}: node {step.name!r} takes args of type {show(step.takes)}, but {detail}"
        )
