"""Every backend the conformance suite, the stateful model and the bad-input tests run on.

Each entry is a factory ``open_backend(**options)`` returning an async context
manager that yields a fresh, empty ``Backend``; it takes at least ``queue=``
and ``clock=``. Adding a backend to every suite is one line in ``BACKENDS``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio

from trioqueue import Backend, MemoryBackend

Factory = Callable[..., AbstractAsyncContextManager[Backend]]


def open_memory(**options: Any) -> AbstractAsyncContextManager[Backend]:
    """A fresh in-memory backend."""
    return MemoryBackend.open(**options)


@asynccontextmanager
async def open_sqlite(**options: Any) -> AsyncIterator[Backend]:
    """A fresh SQLite backend on a new file in a temporary folder."""
    from trioqueue.backends.sqlite import SqliteBackend

    folder = tempfile.mkdtemp(prefix="trioqueue-")
    try:
        async with SqliteBackend.open(f"sqlite:///{folder}/tasks.db", **options) as backend:
            yield backend
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_PG_DATABASE: list[str] = []


def _pg_database() -> str:
    """Create the test database once per process (dropped at exit); return its URL."""
    if not _PG_DATABASE:
        from pg_support import fresh_database

        cm = fresh_database()
        _PG_DATABASE.append(cm.__enter__())
        atexit.register(cm.__exit__, None, None, None)
    return _PG_DATABASE[0]


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@asynccontextmanager
async def open_postgres(**options: Any) -> AsyncIterator[Backend]:
    """A fresh PostgreSQL backend: a new schema in the test database, dropped after."""
    from pg_support import random_name

    from trioqueue.backends.postgres import PostgresBackend

    url = await trio.to_thread.run_sync(_pg_database)
    schema = random_name("tq")
    try:
        async with PostgresBackend.open(url, schema=schema, **options) as backend:
            yield backend
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_drop_schema, url, schema)


BACKENDS: dict[str, Factory] = {
    "memory": open_memory,
    "sqlite": open_sqlite,
    "postgres": open_postgres,
}

#: The parameter ids of the backend fixtures, in order.
BACKEND_NAMES = list(BACKENDS)
