"""``FlowWorker``: a ``Worker`` whose tasks are the nodes of one flow.

``WorkerBuilder.build(flow)`` makes one. Each node task's payload frame names
its node: the worker decodes it into that node's args, runs that node's
handler (through the worker's layers) and settles its DONE with a
``Transition`` (what follows it), which the consumer writes with the driver's
``advance``. Failures, retries, timeouts and cancellation are a plain
worker's.
"""

from __future__ import annotations

from typing import Any

from .._driver import Outcome, StoredTask
from .._task import Status, Task
from .._worker import Worker, WorkerConfig
from ._define import Flow
from ._plan import NodeCall, compile_plan
from ._spec import FlowError

__all__ = ["FlowWorker"]


async def _unused(args: Any) -> None:  # the plain worker's handler, replaced by the dispatch
    raise AssertionError("a flow worker dispatches to its nodes")


class FlowWorker(Worker):
    """A worker running the nodes of one ``Workflow`` or ``DagFlow``.

    Raises (at construction):
      FlowError: the flow is invalid, a node's handler cannot be resolved, the
        types between nodes do not fit, or the backend's driver does not
        implement workflows (``advance``).
    """

    def __init__(self, config: WorkerConfig, flow: Flow) -> None:
        plan = compile_plan(flow)
        super().__init__(config, _unused)
        if not callable(getattr(config.backend.driver, "advance", None)):
            raise FlowError(
                f"flow {flow.name!r}: the backend's driver {type(config.backend.driver).__name__} "
                f"does not implement workflows (no `advance` operation)"
            )
        plan.bind(
            data=dict(config.data),
            context=self.context,
            layers=config.layers,
            codec=self.backend.codec,
        )
        self.flow = flow
        self._plan = plan
        self._decode = plan.decode
        self.service = self._dispatch
        self.args_type = Any

    async def _dispatch(self, task: Task[Any]) -> Any:
        call: NodeCall = task.args
        task.args = call.args
        service = call.step.service
        assert service is not None
        return await service(task)

    def _done_outcome(self, rec: StoredTask, result: Any) -> Outcome:
        try:
            return self._plan.transition(rec, result, self._encode, self.backend.driver.now())
        except Exception as exc:  # a node task without its run's meta: never crash the worker
            error = f"not a node of a run of flow {self.flow.name!r}: {type(exc).__name__}: {exc}"
            return Outcome(rec.id, Status.KILLED, error=error)

    def __repr__(self) -> str:
        return super().__repr__().replace("<Worker", f"<FlowWorker flow={self.flow.name!r}", 1)
