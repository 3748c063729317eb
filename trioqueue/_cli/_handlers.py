"""Finding the handler a command names as ``module:handler``, and the type of its args."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from .._errors import HandlerError
from .._handler import args_type_of
from ._errors import EXIT_USAGE, CliError, one_line

__all__ = ["args_type", "load_handler"]


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
            raise CliError(
                EXIT_USAGE, f"module {module_name!r} has no attribute {attr!r}"
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
