"""Starting a run and reading one: ``Flow.push`` and ``Flow.get_run``.

A run is its run record (id = the run id, RUNNING until the transition that
ends it, never claimable) and one task per node, ``<run id>/<node>`` (a map's
items ``<run id>/<node>/<index>``). The run record and the roots' tasks are
stored by one insert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._task import Status, Task, TaskId
from ._plan import META_ATTEMPTS, compile_plan
from ._records import META_FLOW, META_ITEM, META_NODE, META_RUN, node_id

if TYPE_CHECKING:
    from .._backend import Backend
    from ._spec import Graph as Flow

__all__ = ["FlowRun", "push_run", "read_run"]

_RESERVED = (META_FLOW, META_RUN, META_NODE, META_ITEM, META_ATTEMPTS)
_LONGEST_SUFFIX = 1 + 100 + 1 + 10  # "/<node>/<item>"


@dataclass(frozen=True, slots=True)
class FlowRun:
    """A run as storage holds it: ``Flow.get_run`` returns one.

    Attributes:
      run: The run record: its status is the run's (RUNNING until it ends
        DONE, KILLED or CANCELLED), its result the run's result, its
        ``last_error`` names the node that ended it.
      nodes: The tasks created so far, by node name (a map's items as
        ``"<node>/<index>"``), in the flow's order.
    """

    run: Task[Any]
    nodes: dict[str, Task[Any]]

    @property
    def status(self) -> Status:
        """The run's status."""
        return self.run.status


async def push_run(flow: Flow, backend: Backend, args: Any, options: dict[str, Any]) -> TaskId:
    """Store a run record and its roots' tasks in one insert; see ``Flow.push``."""
    plan = compile_plan(flow)
    options = dict(options)
    if_exists = options.pop("if_exists", "skip")
    if if_exists not in ("skip", "raise"):
        raise ValueError(
            f"if_exists must be 'skip' or 'raise' for a workflow run, got {if_exists!r} "
            f"(a finished run's node tasks keep their ids: push the new run with a new id)"
        )
    meta = dict(options.pop("meta", None) or {})
    if any(k in _RESERVED for k in meta):
        raise ValueError(f"meta keys {', '.join(_RESERVED)} are reserved for workflows")
    rec = backend._record(args, now=backend.driver.now(), meta=meta, **options)
    if len(rec.id) + _LONGEST_SUFFIX > 255:
        raise ValueError(f"a run id must be at most {255 - _LONGEST_SUFFIX} characters")
    run_id = str(rec.id)
    rec.meta = {**rec.meta, META_FLOW: flow.name, META_RUN: run_id, META_ATTEMPTS: rec.max_attempts}
    try:
        first = plan.first_tasks(rec, args, backend.codec.encode)
    except TypeError as exc:
        raise TypeError(f"flow {flow.name!r}: {exc}") from None
    rec.status = Status.RUNNING
    rec.started_at = rec.created_at
    await backend._store([rec, *first], if_exists)
    return TaskId(rec.id)


async def read_run(flow: Flow, backend: Backend, run_id: str) -> FlowRun:
    """Read a run record and its node tasks; see ``Flow.get_run``."""
    plan = compile_plan(flow)
    driver = backend.driver
    run = await driver.get(run_id)
    if run is None:
        raise LookupError(f"no run {run_id!r} (never pushed, or deleted)")
    names = list(plan.steps)
    found = {r.id: r for r in await driver.get_many([node_id(run_id, n) for n in names])}
    nodes: dict[str, Task[Any]] = {}
    for name in names:
        rec = found.get(node_id(run_id, name))
        if rec is not None:
            nodes[name] = backend._to_task(rec)
        if not plan.steps[name].spec.map:
            continue
        start = 0
        while True:  # a map's items, a page at a time, until one is missing
            ids = [node_id(run_id, name, i) for i in range(start, start + 256)]
            page = await driver.get_many(ids)
            for r in page:
                nodes[r.id[len(run_id) + 1 :]] = backend._to_task(r)
            if len(page) < len(ids):
                break
            start += len(ids)
    return FlowRun(backend._to_task(run), nodes)
