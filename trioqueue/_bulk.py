"""Bulk administration: retry, cancel or delete every task of a filter, one bounded page at a time.

The command line's filters and the board's "every task of the filter" both
come here. A filter (a queue or all, and statuses) is walked by keyset pages:
newest id first, each page the ids below the last one seen, so that

- each page is one bounded read and one bounded write (at most ``BULK_PAGE``
  ids, one statement or transaction on the SQL backends), and memory does
  not grow with the number of matching tasks;
- a task that changes status meanwhile never shifts a later page (no page is
  skipped), and a task the operation makes match the filter again (a retried
  task that fails again) is behind the walk: it is never visited twice, so
  the walk ends;
- tasks pushed after the walk passed their place (newer ids) are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal, Protocol

from ._driver import Driver, StoredTask
from ._flow._admin import BulkRetry
from ._flow._resume import run_of
from ._retrying import retrying
from ._task import Status

__all__ = [
    "BULK_PAGE",
    "FINAL",
    "BulkAction",
    "Walk",
    "bulk_apply",
    "bulk_count",
    "purge_finished",
    "walk",
]

#: Tasks read and changed per page of a bulk operation.
BULK_PAGE = 500

#: The statuses a task ends in: those a purge deletes.
FINAL = (Status.DONE, Status.KILLED, Status.CANCELLED)

#: What a bulk operation does to each page.
BulkAction = Literal["retry", "cancel", "delete"]

#: Called with each page of a walk; returns how many of its tasks it changed.
Walk = Callable[[list[StoredTask]], Awaitable[int]]


class _Store(Protocol):
    """What a walk needs of a backend: its driver and its transient errors."""

    @property
    def driver(self) -> Driver: ...

    @property
    def transient(self) -> tuple[type[BaseException], ...]: ...


async def walk(
    backend: _Store,
    on_page: Walk,
    *,
    queue: str | None,
    statuses: Sequence[Status],
    at_most: int | None = None,
    page: int = BULK_PAGE,
) -> int:
    """Call ``on_page`` with every page of tasks of ``queue`` (None: all) in ``statuses``.

    Each status is walked newest id first, by keyset (see the module's
    docstring), until no task is left below the last id seen or ``at_most``
    tasks were read.

    Returns:
      The sum of what ``on_page`` returned.

    Raises:
      BackendError: if storage failed after retries.
    """
    driver = backend.driver
    total = seen = 0
    for status in statuses:
        before: str | None = None
        while at_most is None or seen < at_most:
            limit = page if at_most is None else min(page, at_most - seen)

            got = await retrying(
                "list tasks", _page, driver, queue, status, limit, before,
                transient=backend.transient, attempts=3,
            )  # fmt: skip
            if not got:
                break
            seen += len(got)
            before = got[-1].id
            total += await on_page(got)
            if len(got) < limit:
                break
    return total


async def _page(
    driver: Driver, queue: str | None, status: Status, limit: int, before: str | None
) -> list[StoredTask]:
    return await driver.list_tasks(queue=queue, status=status, limit=limit, offset=0, before=before)


async def bulk_apply(
    backend: _Store,
    action: BulkAction,
    *,
    queue: str | None,
    statuses: Sequence[Status],
    at_most: int | None = None,
    runs: BulkRetry | None = None,
) -> int:
    """Retry, cancel or delete the tasks of a filter, page by page (see ``walk``).

    Each page is one call of the driver's ``retry_many``, ``cancel_many`` or
    ``delete``; a task that changed state since its page was read and no
    longer allows the action is left alone and not counted. A retry leaves
    workflow run records out and retries the nodes of runs one by one
    through ``runs`` (made here when not given), which resumes their runs:
    ``runs.resumed`` then names them.

    Returns:
      How many tasks were retried, cancelled (or flagged) or deleted.
    """
    driver = backend.driver
    write = {"retry": driver.retry_many, "cancel": driver.cancel_many, "delete": driver.delete}
    act = write[action]
    if action == "retry" and runs is None:
        runs = BulkRetry(backend)  # type: ignore[arg-type]  # a Backend: it retries by id

    async def on_page(tasks: list[StoredTask]) -> int:
        of_runs = [] if runs is None else [t for t in tasks if run_of(t.id, t.meta) is not None]
        ids = [t.id for t in tasks if not of_runs or t not in of_runs]
        n = 0
        if ids:
            n = await retrying(f"{action} tasks", act, ids, transient=backend.transient, attempts=3)
        for t in of_runs:  # a run's record is left out; its nodes resume it
            if runs is not None and runs.keep_id(t.id, t.meta):
                n += await runs.retry(t.id)
        return n

    return await walk(backend, on_page, queue=queue, statuses=statuses, at_most=at_most)


async def bulk_count(
    backend: _Store,
    keep: Callable[[StoredTask], bool],
    *,
    queue: str | None,
    statuses: Sequence[Status],
) -> int:
    """Count the tasks of a filter that ``keep`` keeps, page by page (memory stays bounded)."""

    async def on_page(tasks: list[StoredTask]) -> int:
        return sum(1 for t in tasks if keep(t))

    return await walk(backend, on_page, queue=queue, statuses=statuses)


async def purge_finished(backend: _Store, before: Mapping[Status, float]) -> int:
    """Delete the final tasks finished before their status's cutoff, in batches.

    Each batch is one call of the driver's ``prune`` (at most ``BULK_PAGE``
    tasks, no worker entry); the batches go on until one comes back short.
    Only the statuses in ``before`` are deleted.

    Returns:
      How many were deleted.
    """
    n = 0
    while True:
        got = await retrying(
            "purge tasks", backend.driver.prune, None, before, BULK_PAGE, -math.inf,
            transient=backend.transient, attempts=3,
        )  # fmt: skip
        n += got
        if got < BULK_PAGE:
            return n
