"""Finding the handler a command names as ``module:handler``, and the type of its args."""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .._errors import HandlerError
from .._handler import args_type_of
from ._errors import EXIT_USAGE, CliError, one_line

__all__ = [
    "CONFIGURE_HOOK",
    "Target",
    "args_type",
    "handler_queue",
    "load_handler",
    "load_targets",
]

#: A handler module's function the worker command calls with each
#: ``WorkerBuilder`` before building (to add ``data`` and layers).
CONFIGURE_HOOK = "configure_worker"


def handler_queue(handler: Any, spec: str) -> str:
    """Return the queue a handler's tasks go to when no ``--queue`` is given.

    A function is known by where it is defined, ``module:qualname`` (so
    ``push app:send`` and ``worker app:send`` agree even when ``app`` imported
    ``send`` from elsewhere); anything else by the ``module:name`` that named it.
    """
    if inspect.isfunction(handler) and "<" not in handler.__qualname__:
        return f"{handler.__module__}:{handler.__qualname__}"
    return spec


@dataclass(frozen=True, slots=True)
class Target:
    """One handler the worker command runs: where it was named, its queue, the module's hook.

    Attributes:
      spec: How the command line named it (``app:send``, ``app:HANDLERS[1]``).
      handler: The handler (a function, service or stack).
      queue: Its queue: ``--queue``, else ``handler_queue``.
      configure: The module's ``configure_worker``, or None.
    """

    spec: str
    handler: Any
    queue: str
    configure: Callable[..., Any] | None


def load_targets(specs: list[str], queue: str | None) -> list[Target]:
    """Return the handlers ``worker`` runs: each spec names a handler or a list of handlers.

    Raises:
      CliError: (usage) for what cannot be imported, is not a handler, or
        for two handlers on one queue (``--queue`` with several handlers).
    """
    targets: list[Target] = []
    for spec in specs:
        obj = load_handler(spec)
        module = sys.modules[spec.partition(":")[0]]
        hook = getattr(module, CONFIGURE_HOOK, None)
        items = list(obj) if isinstance(obj, list | tuple) else [obj]
        if not items:
            raise CliError(EXIT_USAGE, f"{spec} is an empty list: no handler to run")
        for i, handler in enumerate(items):
            name = spec if len(items) == 1 and obj is handler else f"{spec}[{i}]"
            args_type(handler, name)
            targets.append(Target(name, handler, queue or handler_queue(handler, name), hook))
    seen: dict[str, str] = {}
    for t in targets:
        if t.queue in seen:
            why = " (--queue gives them one queue)" if queue else ""
            raise CliError(
                EXIT_USAGE, f"{seen[t.queue]} and {t.spec} would share queue {t.queue!r}{why}"
            )
        seen[t.queue] = t.spec
    return targets


def _did_you_mean(module: ModuleType, attr: str) -> str:
    names = [n for n in vars(module) if not n.startswith("_")]
    close = difflib.get_close_matches(attr, names, n=3, cutoff=0.6)
    return f": did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def load_handler(spec: str) -> Any:
    """Import ``module:name`` (``name`` may be dotted), with the current directory on the path.

    Raises:
      CliError: naming what could not be imported or found.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(EXIT_USAGE, f"expected module:handler, got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise CliError(
                EXIT_USAGE,
                f"cannot import module {module_name!r}: no module named {exc.name!r} "
                f"(searched the current directory and sys.path)",
            ) from exc
        raise CliError(
            EXIT_USAGE, f"importing module {module_name!r} failed: {one_line(exc)}"
        ) from exc
    except Exception as exc:
        raise CliError(
            EXIT_USAGE, f"importing module {module_name!r} failed: {one_line(exc)}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            hint = _did_you_mean(obj, part) if isinstance(obj, ModuleType) else ""
            raise CliError(
                EXIT_USAGE, f"module {module_name!r} has no attribute {attr!r}{hint}"
            ) from None
    return obj


def args_type(handler: Any, spec: str) -> Any:
    """Return the type ``handler``'s args decode into (as the worker would decode them).

    Worker-provided parameters (``Data[...]``, ``WorkerContext``) are not
    resolved: only a worker can provide them.

    Raises:
      CliError: (usage) if ``handler`` is not a handler, service or stack.
    """
    try:
        return args_type_of(handler)
    except HandlerError as exc:
        raise CliError(EXIT_USAGE, f"{spec} is not a handler: {exc}") from exc
