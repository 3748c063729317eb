"""What the board's pages and actions share: the backend, the options, the templates.

``Board.render`` fills a template with the values every page needs (the CSRF
token, read-only or not) and sets the CSRF cookie on a browser's first visit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .._backend import Backend
from .._task import from_timestamp
from ._security import CSRF_COOKIE, new_csrf_token

__all__ = ["Board", "board_url"]


class Board:
    """What every page and action shares: the backend, the options and the templates."""

    def __init__(self, backend: Backend, *, read_only: bool, refresh: float) -> None:
        self.backend = backend
        self.read_only = read_only
        self.refresh = refresh
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("trioqueue.web", "templates"),
            autoescape=True,  # ids, queues, errors and args are producer-controlled
            undefined=jinja2.StrictUndefined,
        )
        env.filters.update(when=_when, pretty=_pretty, short=_short)
        env.globals.update(url=board_url, ago=self.ago)
        self.env = env

    @property
    def has_schedules(self) -> bool:
        """Whether the backend's driver keeps schedules (a ``schedules`` method)."""
        return getattr(self.backend.driver, "schedules", None) is not None

    def now(self) -> datetime:
        """The store's clock now, as a UTC datetime."""
        return from_timestamp(self.backend.driver.now())

    def ago(self, when: datetime | None) -> str:
        """How long ago ``when`` was, as ``3m 5s`` (``in 10s`` for a future time)."""
        if when is None:
            return ""
        secs = (self.now() - when).total_seconds()
        text = _span(abs(secs))
        return f"{text} ago" if secs >= 0 else f"in {text}"

    def render(
        self, request: Request, name: str, context: Mapping[str, Any], *, status: int = 200
    ) -> Response:
        """Render a template with the page's common values; set the CSRF cookie if missing."""
        token = request.cookies.get(CSRF_COOKIE, "")
        fresh = len(token) < 32 or not token.replace("-", "").replace("_", "").isalnum()
        if fresh:
            token = new_csrf_token()
        html = self.env.get_template(name).render(
            **context,
            csrf=token,
            read_only=self.read_only,
            has_schedules=self.has_schedules,
            path=request.url.path,
        )
        response = HTMLResponse(html, status_code=status)
        if fresh:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response


def board_url(path: str, **params: Any) -> str:
    """Return ``path`` with a query string of the ``params`` that are not None or empty."""
    return _url(path, **params)


def _url(path: str, **params: Any) -> str:
    query = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return path + ("?" + urlencode(query) if query else "")


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _pretty(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes that do not decode: {bytes(value[:64])!r}>"
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def _short(value: Any, n: int = 80) -> str:
    text = "" if value is None else str(value)
    text = text.splitlines()[0] if text else ""
    return text if len(text) <= n else text[: n - 1] + "…"


def _span(secs: float) -> str:
    secs = int(secs)
    if secs < 60:
        return f"{secs}s"
    if secs < 3600:
        return f"{secs // 60}m {secs % 60}s"
    if secs < 86400:
        return f"{secs // 3600}h {secs % 3600 // 60}m"
    return f"{secs // 86400}d {secs % 86400 // 3600}h"
