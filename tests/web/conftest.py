"""Fixtures of the board's HTTP tests: a seeded store on every backend, and a client of its app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from backend_factories import Factory
from web.board_data import Seeded, seed

from trioqueue import Backend
from trioqueue.web import create_app
from trioqueue.web._security import CSRF_COOKIE

BASE = "http://127.0.0.1:8765"


@dataclass
class BoardClient:
    """A browser of the board: the backend behind it, what was seeded, and an HTTP client."""

    backend: Backend
    seeded: Seeded
    http: httpx.AsyncClient

    async def csrf(self) -> str:
        """The CSRF token, from the cookie a first page view sets."""
        if CSRF_COOKIE not in self.http.cookies:
            (await self.http.get("/")).raise_for_status()
        return str(self.http.cookies[CSRF_COOKIE])

    async def post(self, path: str, **fields: Any) -> httpx.Response:
        """POST a form with the CSRF token, as the board's own forms do."""
        data = {"csrf": await self.csrf(), **{k: str(v) for k, v in fields.items()}}
        return await self.http.post(path, data=data)


def client_of(backend: Backend, **options: Any) -> httpx.AsyncClient:
    """An HTTP client of the board of ``backend`` (in process, through ASGI)."""
    app = create_app(backend, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
async def board(open_backend: Factory) -> AsyncIterator[BoardClient]:
    """The board of a store seeded with tasks in every status, a hostile one among them."""
    async with open_backend() as backend:
        seeded = await seed(backend, hostile=True)
        async with client_of(backend) as http:
            yield BoardClient(backend, seeded, http)
