"""Types flowing between workflow steps: what a step returns, what the next one takes.

A pure check at ``build``: where both annotations are given, a step's return
type must fit the next step's args type (leniently: only a clear mismatch is
refused, never a form this check does not understand).
"""

from __future__ import annotations

import collections.abc as cabc
import functools
import inspect
import types
import typing
from typing import Any

from .._handler import Stack, args_type_of

__all__ = ["UNKNOWN", "element_types", "fits", "list_item", "return_type", "show"]


class _Unknown:
    def __repr__(self) -> str:
        return "<not annotated>"


#: A type not given (no annotation): fits anything.
UNKNOWN: Any = _Unknown()

_SEQUENCES = (list, tuple, cabc.Sequence, cabc.Iterable, cabc.Collection)


def show(tp: Any) -> str:
    """Return a short text for a type, as error messages show it."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


def return_type(handler: Any) -> Any:
    """Return a handler's return annotation, or ``UNKNOWN``."""
    while isinstance(handler, Stack):
        handler = handler.handler
    fn = handler
    if not (inspect.isfunction(fn) or inspect.ismethod(fn) or isinstance(fn, functools.partial)):
        fn = getattr(handler, "__call__", None)  # noqa: B004 - the method itself
    while isinstance(fn, functools.partial):
        fn = fn.func
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return UNKNOWN
    return hints.get("return", UNKNOWN)


def args_type(handler: Any) -> Any:
    """Return a handler's args annotation, or ``UNKNOWN`` when it has none."""
    tp = args_type_of(handler)
    return UNKNOWN if tp is Any else tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def list_item(tp: Any) -> Any:
    """Return the item type of a list-like type, ``UNKNOWN`` if unsaid, None if not a list."""
    if tp is UNKNOWN or tp is Any:
        return UNKNOWN
    origin = typing.get_origin(tp) or tp
    if not (isinstance(origin, type) and issubclass(origin, _SEQUENCES)) or origin in (str, bytes):
        return None
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return UNKNOWN
    return args[0] if args else UNKNOWN


def element_types(tp: Any, n: int | None) -> list[Any] | Any | None:
    """Return the per-position types of a tuple-like args type of ``n`` items.

    A list of ``n`` types for ``tuple[A, B]``; one type for every item of
    ``tuple[A, ...]``, ``list[A]`` or a ``Sequence[A]``; None for a type no
    tuple of inputs decodes into.
    """
    if tp is UNKNOWN or tp is Any:
        return Any
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if n is not None and len(args) != n:
            return None
        return list(args)
    item = list_item(tp)
    if item is None:
        return None
    return Any if item is UNKNOWN else item


def fits(produced: Any, wanted: Any) -> bool:
    """Whether a value of type ``produced`` may be given as args of type ``wanted``."""
    if produced is UNKNOWN or wanted is UNKNOWN or produced is Any or wanted is Any:
        return True
    if produced == wanted:
        return True
    if isinstance(wanted, typing.TypeVar) or isinstance(produced, typing.TypeVar):
        return True
    if _is_union(wanted):
        return any(fits(produced, w) for w in typing.get_args(wanted))
    if _is_union(produced):
        return all(fits(p, wanted) for p in typing.get_args(produced))
    if produced is type(None) or produced is None:
        return wanted is type(None) or wanted is None
    if wanted is float and produced is int:
        return True
    p_origin = typing.get_origin(produced) or produced
    w_origin = typing.get_origin(wanted) or wanted
    if not (isinstance(p_origin, type) and isinstance(w_origin, type)):
        return True  # Literal, Annotated, NewType...: not judged here
    if typing.is_typeddict(w_origin) or typing.is_typeddict(p_origin):
        return p_origin is w_origin or dict in (p_origin, w_origin)
    seqs = (list, tuple)
    if p_origin in seqs and (w_origin in seqs or w_origin in _SEQUENCES):
        p_item, w_item = list_item(produced), list_item(wanted)
        if p_origin is tuple and w_origin is tuple:
            pa, wa = typing.get_args(produced), typing.get_args(wanted)
            if pa and wa and Ellipsis not in pa and Ellipsis not in wa:
                return len(pa) == len(wa) and all(fits(p, w) for p, w in zip(pa, wa, strict=True))
        if p_origin is tuple and p_item is UNKNOWN and typing.get_args(produced):
            return all(fits(p, w_item) for p in typing.get_args(produced) if p is not Ellipsis)
        return fits(p_item, w_item)
    if not issubclass(p_origin, w_origin):
        return False
    pa, wa = typing.get_args(produced), typing.get_args(wanted)
    if pa and wa and len(pa) == len(wa):
        return all(fits(p, w) for p, w in zip(pa, wa, strict=True))
    return True
