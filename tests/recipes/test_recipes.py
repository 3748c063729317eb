"""The framework recipes of docs/recipes.md, run by each framework's own test client.

Each app pushes to SQLite or PostgreSQL and a Trio worker process runs the
tasks; the app then reads the result back.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from trioqueue.sync import Client

pytestmark = pytest.mark.seconds
HERE = Path(__file__).parent


def _fresh(name: str, monkeypatch: pytest.MonkeyPatch, url: str) -> Any:
    monkeypatch.setenv("TRIOQUEUE_BACKEND", url)
    monkeypatch.syspath_prepend(str(HERE))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def test_fastapi_with_the_asyncio_client(
    store_url: str, worker_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    module = _fresh("fastapi_asyncio_app", monkeypatch, store_url)
    with TestClient(module.app) as http:  # runs the lifespan: the client opens
        task = http.post("/double/21").json()["task"]
        assert http.get(f"/tasks/{task}/result").json() == {"result": 42}


async def test_fastapi_on_trio_with_the_trio_backend(
    store_url: str, worker_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _fresh("fastapi_trio_app", monkeypatch, store_url)
    app = module.app
    async with app.router.lifespan_context(app):  # what Hypercorn's Trio worker runs
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            task = (await http.post("/double/21")).json()["task"]
            with trio.fail_after(60):
                got = await http.get(f"/tasks/{task}/result")
            assert got.json() == {"result": 42}


def test_flask_with_the_blocking_client(
    store_url: str, worker_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _fresh("flask_app", monkeypatch, store_url)
    try:
        http = module.app.test_client()
        task = http.post("/double/21").get_json()["task"]
        assert http.get(f"/tasks/{task}/result").get_json() == {"result": 42}
    finally:
        module.tasks().close()


def _django_database(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.removeprefix("sqlite:///")}
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or 5432),
    }


def test_django_with_the_blocking_client_and_its_own_transactions(
    store_url: str, worker_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import django
    from django.conf import settings

    monkeypatch.syspath_prepend(str(HERE))
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF="django_app",
            ALLOWED_HOSTS=["testserver"],
            DATABASES={"default": _django_database(store_url)},
            TRIOQUEUE_BACKEND=store_url,
            USE_TZ=True,
        )
        django.setup()
    import django_app
    from django.db import connections
    from django.test import Client as DjangoClient

    connections.close_all()
    connections.settings["default"] = {
        **connections.settings["default"],
        **_django_database(store_url),
    }
    with contextlib.suppress(AttributeError):  # none made in this thread yet
        del connections["default"]
    monkeypatch.setattr(settings, "TRIOQUEUE_BACKEND", store_url)
    django_app.tasks.cache_clear()
    with connections["default"].cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS shop_orders (n integer)")
    try:
        http = DjangoClient(raise_request_exception=False)
        task = http.post("/double/21").json()["task"]
        assert http.get(f"/tasks/{task}/result").json() == {"result": 42}
        # The order and its task commit together...
        task = http.post("/orders", {"n": 5}, content_type="application/json").json()["task"]
        assert http.get(f"/tasks/{task}/result").json() == {"result": 10}
        # ...or roll back together.
        refused = http.post("/orders", {"n": 7, "fail": True}, content_type="application/json")
        assert refused.status_code == 500
        with Client(store_url, queue="jobs") as client, connections["default"].cursor() as cursor:
            cursor.execute("SELECT n FROM shop_orders ORDER BY n")
            assert [r[0] for r in cursor.fetchall()] == [5]
            ids = [t for t in _all_ids(store_url) if client.get_task(t).args == {"n": 7}]  # type: ignore[union-attr]
            assert ids == []
    finally:
        django_app.tasks().close()
        connections.close_all()


def _all_ids(url: str) -> list[str]:
    import sqlite3

    import psycopg

    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [r[0] for r in conn.execute("SELECT id FROM trioqueue_tasks")]
    with psycopg.connect(url) as pg:
        return [r[0] for r in pg.execute("SELECT id FROM trioqueue.tasks")]
