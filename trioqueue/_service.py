"""Services and layers, modelled on tower's ``Service`` and ``Layer``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

__all__ = ["Layer", "Service", "ServiceBuilder"]

Req = TypeVar("Req")
Res = TypeVar("Res")
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


class ServiceBuilder(Generic[Req, Res]):
    """Stacks layers around a service; the first layer added sees the task first.

    Example::

        svc = (
            ServiceBuilder()
            .layer(LogLayer())
            .layer(TimeoutLayer(30))
            .service(send_email)
        )
        worker = WorkerBuilder("mail").backend(b).build(svc)

    ``service()`` accepts a handler function (resolved as ``WorkerBuilder.build``
    does, when the stack is built into a worker) or a service object.
    """

    def __init__(self, layers: tuple[Layer, ...] = ()) -> None:
        self._layers = layers

    def layer(self, layer: Layer) -> ServiceBuilder[Req, Res]:
        """Return a builder with ``layer`` added inside the ones already there."""
        if not hasattr(layer, "layer"):
            raise TypeError(f"{layer!r} is not a Layer: it has no layer(inner) method")
        return ServiceBuilder((*self._layers, layer))

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers, outermost first."""
        return self._layers

    def wrap(self, inner: Service[Any, Any]) -> Service[Any, Any]:
        """Return ``inner`` wrapped in every layer (the first added outermost)."""
        svc = inner
        for layer in reversed(self._layers):
            svc = layer.layer(svc)
        return svc

    def service(self, handler: Any) -> Stack:
        """Return a ``Stack`` of these layers around ``handler``."""
        return Stack(self._layers, handler)

    def __repr__(self) -> str:
        return f"ServiceBuilder({', '.join(type(x).__name__ for x in self._layers)})"


class Stack:
    """Layers around a handler or service, as ``ServiceBuilder.service`` returns it.

    A worker resolves the handler (its dependency injection and its argument
    type) when it builds, then wraps it in the layers. Calling a ``Stack``
    directly runs it on a ``Task`` without worker-provided parameters.
    """

    def __init__(self, layers: tuple[Layer, ...], handler: Any) -> None:
        self.layers = layers
        self.handler = handler
        self._direct: Service[Any, Any] | None = None

    async def __call__(self, task: Any) -> Any:
        """Run the stack on ``task`` (handlers may only ask for the task's own parts)."""
        if self._direct is None:
            from ._handler import resolve

            inner, _ = resolve(self.handler, data={}, context=None)
            self._direct = ServiceBuilder(self.layers).wrap(inner)
        return await self._direct(task)

    def __repr__(self) -> str:
        names = ", ".join(type(x).__name__ for x in self.layers)
        return f"<Stack [{names}] -> {getattr(self.handler, '__name__', self.handler)!r}>"
