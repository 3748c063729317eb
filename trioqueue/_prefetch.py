"""The adaptive prefetch policy: how many claimed tasks a worker may hold waiting for a slot.

A pure function of what the last claim saw; the consumer applies it after
each claim. The worker's default prefetch starts at its concurrency and may
grow to ``adaptive_prefetch_max(concurrency)``; a fixed ``prefetch(n)`` never moves.
"""

from __future__ import annotations

__all__ = ["adaptive_prefetch_max", "next_prefetch"]


def adaptive_prefetch_max(concurrency: int) -> int:
    """Return how far an adaptive prefetch channel may grow for ``concurrency`` slots."""
    return max(concurrency, min(4 * concurrency, 128))


def next_prefetch(current: int, *, base: int, most: int, full: bool, starving: bool) -> int:
    """Return the prefetch capacity to use after a claim.

    Args:
      current: The capacity the claim was sized with.
      base: The capacity to fall back to (the worker's concurrency by default).
      most: The largest capacity allowed (``base`` when it is fixed).
      full: Whether the claim returned all it asked for (a backlog is ready).
      starving: Whether slots were waiting for tasks when it was made.

    Returns:
      Double ``current`` (up to ``most``) after a full claim made while slots
      starved: fast tasks and a backlog. ``base`` after a short claim: the
      backlog is drained. Else ``current``: slow tasks never grow it, so
      workers sharing a queue share it fairly.
    """
    if not full:
        return base
    if starving:
        return min(current * 2, most)
    return current
