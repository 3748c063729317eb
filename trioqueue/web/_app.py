"""``create_app``: the board's ASGI app (Starlette routes, guards).

The pages are in ``_views``, the actions in ``_actions``, what they share
(the backend, the templates) in ``_board``; this module wires them and wraps
everything in the guard that checks credentials and adds the security headers.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._backend import Backend
from .._errors import BackendError
from ._actions import routes as action_routes
from ._board import Board
from ._security import Credentials
from ._views import routes as page_routes

__all__ = ["create_app"]

log = logging.getLogger("trioqueue.web")

#: Headers on every response: no framing, no sniffing, nothing loaded from elsewhere.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # "no-referrer" makes the Origin "null"
    (b"cache-control", b"no-store"),
]


def create_app(
    backend: Backend,
    *,
    read_only: bool = False,
    auth: str | Credentials | None = None,
    refresh: float = 5.0,
) -> ASGIApp:
    """Return the web board for ``backend`` as an ASGI app, for a Trio ASGI server.

    Serve it with Hypercorn's Trio worker (``trioqueue web`` does), inside the
    ``async with`` block that keeps ``backend`` open.

    Args:
      backend: An open backend; the board reads and acts on its whole store.
      read_only: Show everything, allow no action (each POST is refused, 403).
      auth: ``user:password`` (or ``Credentials``) for HTTP Basic
        authentication of every request; None: no authentication (keep the
        board on a loopback address, as ``trioqueue web`` insists).
      refresh: Seconds between automatic reloads of the overview and of an
        unfinished task's page; 0 turns it off.

    Returns:
      The ASGI app. Every action is a POST with a CSRF token and logs a line
      on the ``trioqueue.web`` logger.

    Raises:
      ValueError: if ``auth`` is not ``user:password``.
    """
    credentials = Credentials.parse(auth) if isinstance(auth, str) else auth
    board = Board(backend, read_only=read_only, refresh=max(0.0, float(refresh)))
    routes = [
        *page_routes(board),
        *action_routes(board),
        Mount("/static", StaticFiles(packages=[("trioqueue.web", "static")]), name="static"),
    ]

    async def storage_failed(request: Request, exc: Exception) -> Response:
        log.warning("storage failed for %s %s: %s", request.method, request.url.path, exc)
        return board.render(
            request, "message.html", {"title": "Storage unavailable", "text": str(exc)},
            status=503,
        )  # fmt: skip

    app = Starlette(routes=routes, exception_handlers={BackendError: storage_failed})
    app.state.board = board
    return _Guard(app, credentials)


class _Guard:
    """Checks credentials (when set) before anything, and adds the security headers."""

    def __init__(self, app: ASGIApp, credentials: Credentials | None) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.credentials is not None:
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not self.credentials.check(header):
                deny = PlainTextResponse(
                    "authentication required\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="trioqueue", charset="UTF-8"'},
                )
                await deny(scope, receive, self._with_headers(send))
                return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        return wrapped
