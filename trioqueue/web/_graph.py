"""A workflow run drawn as a graph on a task's page, each node coloured by its status.

The hook: a backend (or its driver) that knows workflow runs has an async
``run_graph(task_id)`` returning a ``RunGraph`` (or None when the task is no
step of a run). The board asks for it on every task page and draws what it
gets; a backend without the method shows no graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

from .._task import Status

__all__ = ["RunGraph", "RunNode", "draw_graph", "run_graph_of"]


@dataclass(frozen=True, slots=True)
class RunNode:
    """One node of a run: its name, its task's id and status (both None until it is created)."""

    name: str
    task_id: str | None = None
    status: Status | None = None


@dataclass(frozen=True, slots=True)
class RunGraph:
    """A workflow run: its id, its nodes, and its edges as (from name, to name) pairs."""

    run_id: str
    nodes: Sequence[RunNode]
    edges: Sequence[tuple[str, str]] = ()


async def run_graph_of(backend: Any, task_id: str) -> RunGraph | None:
    """Return the run graph of the task ``task_id`` from the backend's hook, or None.

    Looks for ``run_graph`` on the backend, then on its driver.
    """
    for owner in (backend, getattr(backend, "driver", None)):
        hook = getattr(owner, "run_graph", None)
        if hook is not None:
            graph: RunGraph | None = await hook(task_id)
            return graph
    return None


def _layers(graph: RunGraph) -> dict[str, int]:
    """Each node's column: the length of the longest path reaching it (a cycle stops it)."""
    layer = {n.name: 0 for n in graph.nodes}
    for _ in range(len(layer)):
        moved = False
        for a, b in graph.edges:
            if a in layer and b in layer and layer[b] < layer[a] + 1:
                layer[b] = layer[a] + 1
                moved = True
        if not moved:
            break
    return layer


def draw_graph(graph: RunGraph, *, current: str | None = None) -> str:
    """Return an SVG of the run: columns by depth, arrows along edges, nodes linked to tasks."""
    layer = _layers(graph)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[float, float]] = {}
    for node in graph.nodes:
        col = layer[node.name]
        row = rows.get(col, 0)
        rows[col] = row + 1
        pos[node.name] = (10 + col * 170, 10 + row * 50)
    width = 10 + (max(layer.values(), default=0) + 1) * 170
    height = 10 + max(rows.values(), default=1) * 50
    parts = [
        f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="workflow run graph" xmlns="http://www.w3.org/2000/svg">'
    ]
    for a, b in graph.edges:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            parts.append(
                f'<line class="edge" x1="{x1 + 140}" y1="{y1 + 18}" x2="{x2}" y2="{y2 + 18}"/>'
            )
    for node in graph.nodes:
        x, y = pos[node.name]
        status = node.status.value if node.status is not None else "not created"
        cls = "node " + (node.status.value if node.status is not None else "absent")
        if node.task_id is not None and node.task_id == current:
            cls += " current"
        box = (
            f'<rect class="{cls}" x="{x}" y="{y}" width="140" height="36" rx="4"/>'
            f'<text x="{x + 8}" y="{y + 15}">{escape(node.name[:20])}</text>'
            f'<text class="tick" x="{x + 8}" y="{y + 30}">{escape(status)}</text>'
        )
        if node.task_id is not None:
            href = "/task?id=" + quote(node.task_id, safe="")
            box = f'<a href="{escape(href)}">{box}</a>'
        parts.append(f"<g><title>{escape(node.name)}: {escape(status)}</title>{box}</g>")
    parts.append("</svg>")
    return "".join(parts)
