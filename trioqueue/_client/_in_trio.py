"""asyncio code inside Trio handlers, on trio-asyncio: ``run_asyncio`` and ``asyncio_handler``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._nursery import sole_error

__all__ = ["asyncio_handler", "run_asyncio"]

T = TypeVar("T")


async def run_asyncio(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Await the asyncio coroutine function ``fn(*args, **kwargs)`` from Trio code.

    It runs on the trio-asyncio loop current in this Trio task if there is one
    (open one around the worker to share it, and the asyncio objects made on
    it, between tasks: see ``docs/clients.md``), else on a loop opened for
    this call and closed after it.

    Example::

        async def handler(url: str) -> int:
            return await run_asyncio(fetch_status, url)  # an aiohttp coroutine

    Returns:
      What ``fn`` returned.

    Raises:
      Whatever ``fn`` raised. Cancelling the Trio caller cancels the asyncio task.

    Resource handling:
      A loop opened for the call is closed after it, with whatever asyncio
      tasks ``fn`` left running on it cancelled.
    """
    import trio_asyncio

    call = trio_asyncio.aio_as_trio(fn)
    if trio_asyncio.current_loop.get() is not None:
        result: T = await call(*args, **kwargs)
        return result
    try:
        async with trio_asyncio.open_loop():
            result = await call(*args, **kwargs)
    except BaseExceptionGroup as group:  # the loop's nursery: ``fn``'s error as itself
        error = sole_error(group)
        if error is None:
            raise
        raise error from None
    return result


def asyncio_handler(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Make an asyncio coroutine function a Trio worker's handler (or a step of a flow).

    The handler keeps ``fn``'s signature, so its parameters are injected as
    any handler's (``Data[T]``, ``TaskId``, ``Progress``...); ``fn`` runs as
    ``run_asyncio`` runs it.

    Example::

        @asyncio_handler
        async def fetch(url: str) -> int:
            async with aiohttp.ClientSession() as session:
                async with session.get(url) as response:
                    return response.status

        worker = WorkerBuilder("fetch").backend(backend).build(fetch)
    """

    @functools.wraps(fn)
    async def handler(*args: Any, **kwargs: Any) -> T:
        return await run_asyncio(fn, *args, **kwargs)

    return handler
