"""The board's pages (GET): overview, queues, tasks, a task, workers and schedules.

Each reads the backend through its public calls (and the driver's optional
``finished_histogram`` and ``schedules``), then renders a template. Nothing
here changes the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._flow._resume import RetryKind, retry_kind, run_of
from .._lifecycle import retention_text
from .._retrying import retrying
from .._schedule._record import ScheduleRecord, is_stale
from .._task import Status, Task
from ._board import Board, board_url
from ._charts import Window, bar_chart, per_bucket
from ._graph import draw_graph, run_graph_of

__all__ = ["STATUSES", "WINDOWS", "queue_rows", "routes"]

#: Statuses in the order a task goes through them (the columns of the counts).
STATUSES = [
    Status.PENDING, Status.QUEUED, Status.RUNNING, Status.FAILED,
    Status.DONE, Status.KILLED, Status.CANCELLED,
]  # fmt: skip

#: The overview's charts: the last hour by minute, the last day by quarter hour.
WINDOWS = (Window("last hour", 60, 60.0), Window("last day", 96, 900.0))

#: The most tasks one page of the task list shows.
MAX_PAGE = 500

Handler = Callable[[Request], Awaitable[Response]]


async def queue_rows(board: Board) -> list[dict[str, Any]]:
    """One row per known queue: counts by status, paused or not, its retention (stored, or
    the board's default) and its oldest ready task's age.

    A queue is known when it holds tasks or is paused. The age is how long
    the earliest ready (pending or failed, due) task has waited; None when
    none is ready (or the queue is paused).
    """
    backend = board.backend
    driver = backend.driver
    counts = await backend.counts()
    paused = set(await backend.paused())
    stored = await backend.retentions()
    default = retention_text(backend.retention_default)
    now = driver.now()
    rows = []
    for q in sorted(set(counts) | paused):
        per = counts.get(q, {})
        first = None
        if q not in paused and (per.get(Status.PENDING) or per.get(Status.FAILED)):
            first = await retrying(
                "read a queue's next task", driver.next_run_at, q,
                transient=backend.transient, attempts=3,
            )  # fmt: skip
        rows.append(
            {
                "name": q,
                "counts": [per.get(s, 0) for s in STATUSES],
                "total": sum(per.values()),
                "paused": q in paused,
                "retention": retention_text(stored[q]) if q in stored else f"default: {default}",
                "oldest": None if first is None or first > now else now - first,
            }
        )
    return rows


async def _charts(board: Board) -> list[dict[str, Any]]:
    driver = board.backend.driver
    histogram = getattr(driver, "finished_histogram", None)
    if histogram is None:
        return []
    out = []
    for w in WINDOWS:
        since = driver.now() - w.seconds
        rows = await retrying(
            "count finished tasks", histogram, since, w.step,
            transient=board.backend.transient, attempts=3,
        )  # fmt: skip
        done, killed = per_bucket(rows, w.buckets)
        svg = bar_chart(done, killed, step=w.step, label=f"tasks per minute, {w.name}")
        out.append({"name": w.name, "svg": svg, "done": sum(done), "killed": sum(killed)})
    return out


def routes(board: Board) -> list[Route]:
    """Return the GET routes of ``board``."""

    async def overview(request: Request) -> Response:
        rows = await queue_rows(board)
        totals = [sum(r["counts"][i] for r in rows) for i in range(len(STATUSES))]
        context = {
            "title": "Overview",
            "rows": rows,
            "totals": totals,
            "statuses": STATUSES,
            "charts": await _charts(board),
            "refresh": board.refresh,
        }
        return board.render(request, "overview.html", context)

    async def queues(request: Request) -> Response:
        context = {"title": "Queues", "rows": await queue_rows(board), "statuses": STATUSES}
        return board.render(request, "queues.html", context | _notice(request))

    async def tasks(request: Request) -> Response:
        p = request.query_params
        wanted = p.get("id", "").strip()
        if wanted:
            if await board.backend.get_task(wanted) is not None:
                return RedirectResponse(board_url("/task", id=wanted), status_code=303)
        queue = p.get("queue") or None
        status = p.get("status") or None
        if status is not None and status not in Status._value2member_map_:
            return _bad(board, request, f"unknown status {status!r}")
        try:
            limit = min(MAX_PAGE, max(1, int(p.get("limit", "50"))))
        except ValueError:
            return _bad(board, request, "limit must be a whole number")
        before = p.get("before") or None
        found = await board.backend.list_tasks(
            queue=queue, status=status, limit=limit + 1, before=before
        )
        context = {
            "title": "Tasks",
            "tasks": found[:limit],
            "older": found[limit - 1].id if len(found) > limit else None,
            "queue": queue or "",
            "status": status or "",
            "before": before,
            "limit": limit,
            "missing": wanted or None,
            "statuses": STATUSES,
        }
        return board.render(request, "tasks.html", context | _notice(request))

    async def task(request: Request) -> Response:
        id = request.query_params.get("id", "")
        found = await board.backend.get_task(id) if id else None
        if found is None:
            text = f"There is no task with id {id!r}."
            return board.render(
                request, "message.html", {"title": "No such task", "text": text}, status=404
            )
        graph = await run_graph_of(board.backend, found.id)
        context: dict[str, Any] = {
            "title": "Task",
            "task": found,
            "retry_label": await _retry_label(board, found),
            "graph": None if graph is None else draw_graph(graph, current=found.id),
            "refresh": 0 if found.status.is_final else board.refresh,
        }
        return board.render(request, "task.html", context | _notice(request))

    async def workers(request: Request) -> Response:
        found = await board.backend.workers()
        running: dict[str, int] = {}
        for w in found:
            running[w.queue] = running.get(w.queue, 0) + w.running
        context = {"title": "Workers", "workers": found, "running": sorted(running.items())}
        return board.render(request, "workers.html", context)

    async def schedules(request: Request) -> Response:
        fn = getattr(board.backend.driver, "schedules", None)
        if fn is None:
            text = "This backend keeps no schedules."
            return board.render(
                request, "message.html", {"title": "Schedules", "text": text}, status=404
            )
        records = await retrying("list schedules", fn, transient=board.backend.transient)
        now = board.backend.driver.now()
        rows = [_fields(r) | _state(r, now) for r in records]
        columns = _columns(rows)
        context = {"title": "Schedules", "columns": columns, "rows": rows}
        return board.render(request, "schedules.html", context)

    return [
        Route("/", overview, name="overview"),
        Route("/queues", queues, name="queues"),
        Route("/tasks", tasks, name="tasks"),
        Route("/task", task, name="task"),
        Route("/workers", workers, name="workers"),
        Route("/schedules", schedules, name="schedules"),
    ]


def _bad(board: Board, request: Request, text: str) -> Response:
    return board.render(request, "message.html", {"title": "Bad request", "text": text}, status=400)


#: The notices an action's redirect may ask for (never free text from the URL).
NOTICES = {
    "retried": "Retried {n} task(s).",
    "cancelled": "Cancelled {n} task(s).",
    "deleted": "Deleted {n} task(s).",
    "purged": "Purged {n} finished task(s).",
    "paused": "Paused the queue.",
    "resumed": "Resumed the queue.",
    "refused": "Nothing done: the task is not in a state that allows it.",
}


def _notice(request: Request) -> dict[str, Any]:
    key = request.query_params.get("done", "")
    try:
        n = int(request.query_params.get("n", "0"))
    except ValueError:
        n = 0
    text = NOTICES.get(key)
    return {"notice": None if text is None else text.format(n=n)}


_PREFERRED = (
    "name", "queue", "state", "cron", "every", "last_tick", "last_run", "next_tick", "next_run",
)  # fmt: skip


#: Fields of a stored schedule that are POSIX seconds, shown as times.
_TIMES = ("last_tick", "next_tick", "updated_at")


def _fields(record: Any) -> dict[str, Any]:
    if isinstance(record, ScheduleRecord):
        out = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
        for name in _TIMES:
            if isinstance(out.get(name), int | float):
                out[name] = datetime.fromtimestamp(out[name], UTC)
        return out
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    if isinstance(record, dict):
        return {str(k): v for k, v in record.items()}
    return {k: v for k, v in vars(record).items() if not k.startswith("_")}


def _state(record: Any, now: float) -> dict[str, Any]:
    # A stored schedule that no worker runs any more (``is_stale``) says so.
    if isinstance(record, ScheduleRecord):
        return {"state": "stale" if is_stale(record, now) else "live"}
    return {}


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    return [c for c in _PREFERRED if c in seen] + [c for c in seen if c not in _PREFERRED]


#: The retry button's label, by what a retry does (``retry_kind``): none when refused.
_RETRY_LABELS = {RetryKind.TASK: "Retry", RetryKind.RUN: "Retry and resume its run"}


async def _retry_label(board: Board, task: Task[Any]) -> str | None:
    # A run record is a run: its retry resumes it; a node of an ended run resumes its run.
    of = run_of(str(task.id), task.meta)
    run_status = None
    if of is not None and not of[1]:
        run = await board.backend.get_task(of[0])
        run_status = None if run is None else run.status
    kind = retry_kind(str(task.id), task.status, task.meta, run_status)
    if kind is RetryKind.RUN and of is not None and of[1]:
        return "Resume run"
    return _RETRY_LABELS.get(kind)
