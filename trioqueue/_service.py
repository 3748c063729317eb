"""Services and layers, modelled on tower's ``Service`` and ``Layer``: the protocols.

Stacks of layers around a handler (``ServiceBuilder``, ``Stack``) live in
``_handler.py``, beside the resolution of handlers they need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Layer", "LayerFn", "Service"]

Req_contra = TypeVar("Req_contra", contravariant=True)
Res_co = TypeVar("Res_co", covariant=True)


@runtime_checkable
class Service(Protocol[Req_contra, Res_co]):
    """An async callable that takes a request (a ``Task``) and returns the response.

    A class with ``async def __call__(self, task: Task[Args]) -> R`` is a
    service, and so is the result of ``ServiceBuilder().service(handler)``.
    """

    def __call__(self, request: Req_contra, /) -> Awaitable[Res_co]:
        """Handle one request."""
        ...


@runtime_checkable
class Layer(Protocol):
    """Wraps a service in another: ``layer(inner) -> Service``.

    A layer holds configuration only; the service it returns does the work.
    """

    def layer(self, inner: Service[Any, Any], /) -> Service[Any, Any]:
        """Return a service that wraps ``inner``."""
        ...


class LayerFn:
    """A layer made from a plain function ``fn(inner) -> Service``.

    Example::

        ServiceBuilder().layer(LayerFn(lambda inner: MyService(inner)))
    """

    def __init__(self, fn: Callable[[Service[Any, Any]], Service[Any, Any]]) -> None:
        self.fn = fn

    def layer(self, inner: Service[Any, Any]) -> Service[Any, Any]:
        """Return ``fn(inner)``."""
        return self.fn(inner)
