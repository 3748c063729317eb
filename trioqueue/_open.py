"""``open_backend(url)``: one entry point for every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ._backend import Backend
from ._codec import Codec
from ._registry import backend_spec

__all__ = ["DEFAULT_BACKEND", "open_backend"]

#: The backend URL used when none is given (and ``TRIOQUEUE_BACKEND`` is unset).
DEFAULT_BACKEND = "sqlite:///trioqueue.db"


@asynccontextmanager
async def open_backend(
    url: str, *, queue: str = "default", codec: Codec | None = None, **options: Any
) -> AsyncIterator[Backend]:
    """Open the backend named by ``url`` for the duration of the block.

    - ``memory://``: in memory, on the Trio clock (tests, demos).
    - ``sqlite:///path/to/file.db``: SQLite, the embedded default.
    - ``postgresql://user@host:port/db``: PostgreSQL (needs the ``postgres`` extra).
    - any scheme added with ``trioqueue.drivers.register_backend``.

    Example::

        async with trioqueue.open_backend("sqlite:///jobs.db", queue="email") as backend:
            await backend.push({"to": "a@example.com"})

    Args:
      url: The backend URL.
      queue: The queue to push to and consume from.
      codec: The codec (default ``JsonCodec()``).
      **options: Passed to the backend class's ``open``.

    Raises:
      ValueError: for a URL of no registered scheme.
      TypeError: if ``url`` is not a str.
    """
    spec = backend_spec(url)
    async with spec.open(url, queue=queue, codec=codec, **options) as backend:
        yield backend
