"""The board's actions (POST): retry, cancel and delete a task or every task of a filter,
purge by age, pause and resume a queue.

Each action checks the CSRF token (and the Origin, when the browser sends
one), refuses everything on a read-only board, logs one line on the
``trioqueue.web`` logger (ids quoted, never payloads), then redirects to a
page that says what happened.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .._bulk import BULK_PAGE, BulkAction
from .._bulk import bulk_apply as apply
from .._retrying import retrying
from .._task import Status
from ._board import Board, board_url
from ._security import CSRF_COOKIE, MAX_FORM_BYTES, csrf_ok, parse_form

__all__ = ["BULK_PAGE", "BULK_STATUSES", "bulk_apply", "bulk_count", "routes"]

log = logging.getLogger("trioqueue.web")

#: The statuses each bulk action applies to.
BULK_STATUSES = {
    "retry": (Status.FAILED, Status.KILLED),
    "cancel": (Status.PENDING, Status.FAILED, Status.QUEUED, Status.RUNNING),
    "delete": (Status.PENDING, Status.FAILED, Status.DONE, Status.KILLED, Status.CANCELLED),
}


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def _statuses(action: str, status: Status | None) -> list[Status]:
    allowed = BULK_STATUSES[action]
    return list(allowed) if status is None else [status] if status in allowed else []


async def bulk_count(board: Board, action: str, queue: str | None, status: Status | None) -> int:
    """Return how many tasks ``action`` would apply to in ``queue`` (all: None) and ``status``."""
    wanted = _statuses(action, status)
    counts = await board.backend.counts(queue=queue)
    return sum(per.get(s, 0) for per in counts.values() for s in wanted)


async def bulk_apply(
    board: Board, action: str, queue: str | None, status: Status | None, *, at_most: int
) -> int:
    """Apply ``action`` to the tasks of the filter, newest first, to ``at_most`` of them.

    Walks the filter by keyset pages of ``BULK_PAGE`` tasks, each one bounded
    write (``trioqueue._bulk``), so tasks pushed meanwhile are left alone, a
    confirmation never covers more tasks than it was shown, and any number of
    tasks is handled in bounded memory.

    A retry leaves workflow run records out: the retry of a node of a
    killed run resumes the run (as ``trioqueue retry`` does).

    Returns:
      How many tasks were retried, cancelled or deleted (a task that changed
      state meanwhile and no longer allows it is not counted).
    """
    if action not in BULK_STATUSES:
        raise ValueError(f"unknown bulk action {action!r}")
    verb: BulkAction = (
        "retry" if action == "retry" else "cancel" if action == "cancel" else "delete"
    )
    statuses = _statuses(action, status)
    return await apply(board.backend, verb, queue=queue, statuses=statuses, at_most=at_most)


async def _delete(board: Board, ids: list[str]) -> int:
    delete = board.backend.driver.delete
    n: int = await retrying("delete tasks", delete, ids, transient=board.backend.transient)
    return n


def parse_age(text: str) -> float:
    """Return the seconds of an age such as ``30m``, ``12h`` or ``7d`` (a bare number: seconds).

    Raises:
      ValueError: if ``text`` is not such an age.
    """
    m = _DURATION.fullmatch(text.lower())
    if m is None:
        raise ValueError(f"not an age: {text!r} (use e.g. 30m, 12h or 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


Action = Callable[[Request, dict[str, str]], Awaitable[Response]]


def routes(board: Board) -> list[Route]:
    """Return the POST routes of ``board``."""

    def guarded(action: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                form = await _checked_form(board, request)
                return await action(request, form)
            except _Refused as exc:
                log.warning("refused %s from %s: %s", request.url.path, _client(request), exc)
                context = {"title": "Refused", "text": exc.text}
                return board.render(request, "message.html", context, status=exc.status)

        return endpoint

    def said(what: str, request: Request, target: str, outcome: Any) -> None:
        log.info("%s %s from %s: %s", what, target, _client(request), outcome)

    async def task_action(request: Request, form: dict[str, str]) -> Response:
        what = _what(request, ("retry", "cancel", "delete"))
        id = form.get("id", "")
        if what == "delete":
            n = await _delete(board, [id])
            said("delete task", request, repr(id), "deleted" if n else "refused")
            if n:
                return _back("/tasks", done="deleted", n=1)
            return _back("/task", id=id, done="refused")
        act = board.backend.retry_task if what == "retry" else board.backend.cancel_task
        ok = await act(id)
        said(f"{what} task", request, repr(id), "done" if ok else "refused")
        past = "retried" if what == "retry" else "cancelled"
        return _back("/task", id=id, done=past if ok else "refused", n=1)

    async def bulk(request: Request, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        if action not in BULK_STATUSES:
            raise _Refused(400, f"unknown bulk action {action!r}")
        queue = form.get("queue") or None
        raw = form.get("status") or None
        if raw is not None and raw not in Status._value2member_map_:
            raise _Refused(400, f"unknown status {raw!r}")
        status = None if raw is None else Status(raw)
        if "confirm" not in form:
            count = await bulk_count(board, action, queue, status)
            context = {"title": "Confirm", "action": action, "queue": queue or "",
                       "status": raw or "", "count": count}  # fmt: skip
            return board.render(request, "confirm.html", context)
        try:
            at_most = max(0, int(form["confirm"]))
        except ValueError:
            raise _Refused(400, "confirm must be the count shown") from None
        n = await bulk_apply(board, action, queue, status, at_most=at_most)
        said(f"bulk {action}", request, f"queue={queue!r} status={raw!r}", f"{n} task(s)")
        past = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[action]
        return _back("/tasks", queue=queue, status=raw, done=past, n=n)

    async def purge(request: Request, form: dict[str, str]) -> Response:
        try:
            age = parse_age(form.get("older_than", ""))
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None
        n = await board.backend.purge(older_than=age)
        said("purge", request, f"older than {age:g}s", f"{n} task(s)")
        return _back("/queues", done="purged", n=n)

    async def queue_action(request: Request, form: dict[str, str]) -> Response:
        what = _what(request, ("pause", "resume"))
        queue = form.get("queue", "")
        try:
            if what == "pause":
                await board.backend.pause(queue)
            else:
                await board.backend.resume(queue)
        except (TypeError, ValueError) as exc:
            raise _Refused(400, f"cannot {what} queue: {exc}") from None
        said(f"{what} queue", request, repr(queue), "done")
        return _back("/queues", done="paused" if what == "pause" else "resumed")

    return [
        Route("/task/{what:str}", guarded(task_action), methods=["POST"]),
        Route("/bulk", guarded(bulk), methods=["POST"]),
        Route("/purge", guarded(purge), methods=["POST"]),
        Route("/queue/{what:str}", guarded(queue_action), methods=["POST"]),
    ]


async def _checked_form(board: Board, request: Request) -> dict[str, str]:
    if board.read_only:
        raise _Refused(403, "this board is read-only")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise _Refused(403, "the request comes from another site (Origin does not match)")
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise _Refused(413, f"form too large (over {MAX_FORM_BYTES} bytes)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _Refused(413, f"form too large (over {MAX_FORM_BYTES} bytes)")
    try:
        form = parse_form(body)
    except ValueError as exc:
        raise _Refused(400, str(exc)) from None
    if not csrf_ok(request.cookies.get(CSRF_COOKIE), form):
        raise _Refused(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def _what(request: Request, allowed: tuple[str, ...]) -> str:
    what: str = request.path_params["what"]
    if what not in allowed:
        raise _Refused(404, f"no such action {what!r}")
    return what


def _back(path: str, **params: Any) -> Response:
    return RedirectResponse(board_url(path, **params), status_code=303)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"
