"""Turning a handler function, service or stack of layers into a ``Service`` over ``Task``.

Dependency injection is by annotation: after the args parameter, a handler
may ask for ``Data[T]``, ``WorkerContext``, ``TaskId``, ``Attempt``,
``Task[Args]``, ``Meta``, ``Progress`` and ``Tick``, in any order and any subset.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeAlias, TypeVar

from ._context import WorkerContext
from ._errors import HandlerError
from ._lifecycle import Progress
from ._schedule._tick import Tick, tick_of
from ._service import Layer, Service
from ._task import Attempt, Meta, Task, TaskId

__all__ = ["Data", "ServiceBuilder", "Stack", "args_type_of", "resolve"]

T = TypeVar("T")
Req = TypeVar("Req")
Res = TypeVar("Res")


class _DataMarker:
    def __repr__(self) -> str:
        return "Data"


_DATA = _DataMarker()

#: ``Data[State]`` in a handler's signature asks for the object of type
#: ``State`` given to ``WorkerBuilder.data(...)``; the handler gets that object.
Data: TypeAlias = Annotated[T, _DATA]

_KINDS = "Data[T], WorkerContext, TaskId, Attempt, Task[Args], Meta, Progress or Tick"


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise HandlerError(
            f"cannot read the annotations of handler {_name(fn)}: {exc}. Annotations must "
            f"name types that are importable where the handler is defined."
        ) from exc


def _find_data(param: str, fn: Any, want: Any, data: dict[type, object]) -> object:
    origin = typing.get_origin(want) or want
    if want in data:
        return data[want]
    if isinstance(origin, type):
        found = [v for k, v in data.items() if isinstance(v, origin)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise HandlerError(
                f"parameter {param!r} of handler {_name(fn)} asks for Data[{_name(want)}] but "
                f"{len(found)} registered objects fit; register exactly one of that type"
            )
    shown = _name(want)
    raise HandlerError(
        f"parameter {param!r} of handler {_name(fn)} asks for Data[{shown}], but no "
        f"{shown} was registered: add .data({shown}(...)) to the WorkerBuilder"
    )


def _getter(
    param: inspect.Parameter, hint: Any, fn: Any, data: dict[type, object], ctx: Any
) -> Callable[[Task[Any]], Any]:
    name = param.name
    if typing.get_origin(hint) is Annotated and _DATA in hint.__metadata__:
        obj = _find_data(name, fn, hint.__origin__, data)
        return lambda task: obj
    if hint is WorkerContext:
        if ctx is None:
            raise HandlerError(
                f"parameter {name!r} of handler {_name(fn)} asks for the WorkerContext, "
                f"which exists only inside a worker: build it with WorkerBuilder"
            )
        return lambda task: ctx
    if hint is TaskId:
        return lambda task: task.id
    if hint is Attempt:
        return lambda task: task.attempt
    if hint is Meta:
        return lambda task: task.meta
    if hint is Progress:
        report = None if ctx is None else ctx.report_progress
        return lambda task: Progress(task.id, report)
    if hint is Task or typing.get_origin(hint) is Task:
        return lambda task: task
    if hint is Tick:
        return tick_of
    if hint is inspect.Parameter.empty:
        raise HandlerError(
            f"parameter {name!r} of handler {_name(fn)} has no annotation: annotate it with "
            f"one of {_KINDS}, or give it a default value"
        )
    raise HandlerError(
        f"parameter {name!r} of handler {_name(fn)} is annotated {_name(hint)}, which a worker "
        f"cannot provide: use one of {_KINDS}; for shared state annotate it "
        f"Data[{_name(hint)}] and register the object with WorkerBuilder.data(...)"
    )


def _is_async(fn: Any) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn)


def _undecodable(info: Any, seen: set[int]) -> Any:
    """Return the first type in a ``msgspec.inspect`` tree that no codec decodes into, or None."""
    import msgspec.inspect as mi

    if id(info) in seen:
        return None
    seen.add(id(info))
    if isinstance(info, mi.CustomType):
        return info.cls
    children: list[Any] = []
    for name in getattr(info, "__struct_fields__", ()):
        value = getattr(info, name)
        children.extend(value if isinstance(value, tuple) else [value])
    for child in children:
        if isinstance(child, mi.Field):
            child = child.type
        if isinstance(child, mi.Type):
            found = _undecodable(child, seen)
            if found is not None:
                return found
    return None


def _check_args_type(fn: Any, param: str, args_type: Any) -> None:
    """Refuse an args annotation that a payload can never decode into (a plain class)."""
    import msgspec.inspect as mi

    try:
        info = mi.type_info(args_type)
    except (TypeError, ValueError) as exc:
        raise HandlerError(
            f"parameter {param!r} of handler {_name(fn)} is annotated {_name(args_type)}, "
            f"which task args cannot be decoded into: {exc}"
        ) from exc
    bad = _undecodable(info, set())
    if bad is None:
        return
    inside = "" if bad is args_type else f" (it holds {_name(bad)})"
    raise HandlerError(
        f"parameter {param!r} of handler {_name(fn)} is annotated {_name(args_type)}{inside}, "
        f"which task args cannot be decoded into: {_name(bad)} is a plain class. Make it a "
        f"@dataclass, a msgspec.Struct, a TypedDict or a NamedTuple (or annotate the "
        f"parameter with a builtin type such as dict)"
    )


def _args_type_of_task(hint: Any) -> Any:
    args = typing.get_args(hint)
    return args[0] if typing.get_origin(hint) is Task and args else Any


def _function_service(
    fn: Callable[..., Any], data: dict[type, object], ctx: Any
) -> tuple[Service[Task[Any], Any], Any]:
    sig = inspect.signature(fn)
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if not params:
        raise HandlerError(
            f"handler {_name(fn)} takes no parameters: its first parameter receives the task's "
            f"args, e.g. `async def {getattr(fn, '__name__', 'handler')}(args: MyArgs) -> None`"
        )
    hints = _hints(fn)
    first = params[0]
    first_hint = hints.get(first.name, Any)
    wants_task = first_hint is Task or typing.get_origin(first_hint) is Task
    args_type = _args_type_of_task(first_hint) if wants_task else first_hint
    _check_args_type(fn, first.name, args_type)
    positional: list[Callable[[Task[Any]], Any]] = []
    keyword: dict[str, Callable[[Task[Any]], Any]] = {}
    skipped = False
    for p in params[1:]:
        hint = hints.get(p.name, inspect.Parameter.empty)
        try:
            g = _getter(p, hint, fn, data, ctx)
        except HandlerError:
            if p.default is not inspect.Parameter.empty:
                skipped = True  # left to its default: later ones go by name
                continue
            raise
        if p.kind is p.KEYWORD_ONLY or skipped:
            keyword[p.name] = g
        else:
            positional.append(g)
    # Plain functions returning the handler's coroutine: a service returns an
    # awaitable, and this saves a coroutine frame per task.
    call: Callable[[Task[Any]], Any]
    if wants_task:

        def call(task: Task[Any]) -> Any:
            kw = {k: g(task) for k, g in keyword.items()}
            return fn(task, *[g(task) for g in positional], **kw)

    elif not positional and not keyword:

        def call(task: Task[Any]) -> Any:
            return fn(task.args)

    elif not keyword:

        def call(task: Task[Any]) -> Any:
            return fn(task.args, *[g(task) for g in positional])

    else:

        def call(task: Task[Any]) -> Any:
            return fn(
                task.args,
                *[g(task) for g in positional],
                **{k: g(task) for k, g in keyword.items()},
            )

    call.__qualname__ = _name(fn)
    return call, args_type


def args_type_of(handler: Any) -> Any:
    """Return the type a handler's args decode into, without resolving its other parameters.

    For a function, the first parameter's annotation (``X`` of ``Task[X]``);
    for a service, that of ``__call__``'s task parameter; for a ``Stack``, its
    handler's. ``Any`` when not annotated.

    Raises:
      HandlerError: if ``handler`` is not a handler, service or stack.
    """
    while isinstance(handler, Stack):
        handler = handler.handler
    if isinstance(handler, type):
        raise HandlerError(f"{_name(handler)} is a class, not a service: pass an instance")
    fn = handler
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial)):
        fn = getattr(handler, "__call__", None)  # noqa: B004 - we need the method itself
    if fn is handler and not _is_async(fn):
        raise HandlerError(f"handler {_name(handler)} is not async: define it with `async def`")
    if fn is None or not _is_async(fn):
        raise HandlerError(f"{handler!r} is neither an async function nor a service")
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    if not params:
        raise HandlerError(f"handler {_name(handler)} takes no parameters: it needs the args")
    hint = _hints(fn).get(params[0].name, Any)
    if hint is Task or typing.get_origin(hint) is Task:
        return _args_type_of_task(hint)
    return hint if fn is handler else Any


def resolve(
    handler: Any, *, data: dict[type, object], context: WorkerContext | None
) -> tuple[Service[Task[Any], Any], Any]:
    """Return ``(service, args_type)`` for a handler function, a ``Stack`` or a service.

    Raises:
      HandlerError: naming the parameter that cannot be resolved and the fix.
    """
    if isinstance(handler, Stack):
        inner, args_type = resolve(handler.handler, data=data, context=context)
        return ServiceBuilder(handler.layers).wrap(inner), args_type
    if isinstance(handler, type):
        raise HandlerError(
            f"{_name(handler)} is a class, not a service: pass an instance, "
            f"e.g. build({_name(handler)}(...))"
        )
    if (
        inspect.isfunction(handler)
        or inspect.ismethod(handler)
        or isinstance(handler, functools.partial)
    ):
        if not _is_async(handler):
            raise HandlerError(f"handler {_name(handler)} is not async: define it with `async def`")
        return _function_service(handler, data, context)
    call = getattr(handler, "__call__", None)  # noqa: B004 - we need the method itself
    if call is None:
        raise HandlerError(f"{handler!r} is neither an async function nor a service")
    if not _is_async(call):
        raise HandlerError(
            f"service {_name(type(handler))} has no `async def __call__(self, task)`"
        )
    hints = _hints(call)
    params = [p for p in inspect.signature(call).parameters.values()]
    if not params:
        raise HandlerError(f"service {_name(type(handler))}.__call__ must take the task")
    args_type = _args_type_of_task(hints.get(params[0].name, Any))
    return handler, args_type


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
            inner, _ = resolve(self.handler, data={}, context=None)
            self._direct = ServiceBuilder(self.layers).wrap(inner)
        return await self._direct(task)

    def __repr__(self) -> str:
        names = ", ".join(type(x).__name__ for x in self.layers)
        return f"<Stack [{names}] -> {getattr(self.handler, '__name__', self.handler)!r}>"
