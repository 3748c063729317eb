"""What a flow is made of, shared by its definition and its compiled plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import HandlerError

__all__ = ["RESULT_NODE", "FlowError", "Graph", "NodeSpec"]

#: The name of the node a run's result comes from when it has several sinks
#: (a dict by name) or ends with a ``map`` (the list): made by the compiler.
RESULT_NODE = "result"


class FlowError(HandlerError, ValueError):
    """A workflow that cannot run: a cycle, an unknown or duplicate node, mismatched steps.

    Raised by ``validate()``, by ``WorkerBuilder.build(flow)`` and by ``push``.
    """


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a flow: its handler, what it depends on and how it runs.

    Attributes:
      name: Unique within the flow.
      handler: An async function or service, as ``WorkerBuilder.build`` takes.
      depends_on: Names of the nodes whose results are its args.
      map: Runs once per item of its one dependency's result (a list), the
        results gathered in order for its dependents.
      delay: Seconds between its inputs being ready and its run.
      max_attempts: Its own attempts allowed (None: the run's).
    """

    name: str
    handler: Any
    depends_on: tuple[str, ...] = ()
    map: bool = False
    delay: float = 0.0
    max_attempts: int | None = None


class Graph(Protocol):
    """A flow as its compiler sees it (``Flow``)."""

    name: str

    @property
    def nodes(self) -> Sequence[NodeSpec]: ...

    def sinks(self) -> list[str]: ...

    def validate(self) -> None: ...
