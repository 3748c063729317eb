"""Checking the seconds a caller passes: every duration argument goes through ``seconds``.

A duration that is not a number, NaN, negative or (for most) infinite is a
mistake at the call site; caught there, it names the argument. Caught later,
it does damage: a NaN purge age compares true against everything in
PostgreSQL, a NaN lease never expires, an infinite busy timeout overflows.
"""

from __future__ import annotations

import math

__all__ = ["seconds", "seconds_option"]


def seconds(name: str, value: object, *, positive: bool = False, infinite: bool = False) -> float:
    """Return ``value`` as float seconds if it is a valid duration for argument ``name``.

    Args:
      name: The argument's name, for the message (``"older_than"``).
      value: What the caller passed.
      positive: Refuse zero as well as negatives.
      infinite: Accept ``math.inf`` (a wait with no end, say).

    Raises:
      TypeError: if ``value`` is not an int or float (``bool`` is refused).
      ValueError: naming ``name``, if it is NaN, negative (or zero with
        ``positive``), or infinite without ``infinite``.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        value = math.inf
    bound = "> 0" if positive else ">= 0"
    if math.isnan(value):
        raise ValueError(f"{name} must be a number of seconds {bound}, got NaN")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a number of seconds {bound}, got {value!r}")
    if math.isinf(value) and not infinite:
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return value


def seconds_option(name: str, value: object, **kinds: bool) -> float:
    """``seconds`` for an option that may come as text, from a URL's query string.

    Args:
      name: The option's name, for the message (``"busy_timeout"``).
      value: A number, or its text (``"10"``, ``"0.5"``).
      **kinds: ``positive`` and ``infinite``, as for ``seconds``.

    Raises:
      ValueError: naming ``name``, if the text is not a number, or as ``seconds`` does.
      TypeError: as ``seconds`` does.
    """
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    return seconds(name, value, **kinds)
