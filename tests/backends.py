"""Every backend the conformance suite, the stateful model and the bad-input tests run on.

Each entry is a factory ``open_backend(**options)`` returning an async context
manager that yields a fresh, empty ``Backend``; it takes at least ``queue=``
and ``clock=``. Adding a backend to every suite is one line in ``BACKENDS``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

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


BACKENDS: dict[str, Factory] = {
    "memory": open_memory,
    # "sqlite": open_sqlite,
    # "postgres": pg_support.open_fresh,
}

#: The parameter ids of the backend fixtures, in order.
BACKEND_NAMES = list(BACKENDS)
