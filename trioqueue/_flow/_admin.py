"""Retrying many tasks when some belong to workflow runs: the CLI's and the board's bulk retry.

A run record is a run, not a task: a bulk retry leaves it out, and the retry
of a node of a killed or cancelled run resumes that run (the driver brings
back every unfinished task of it at once). ``BulkRetry`` keeps the count
honest: a node its run's resume already brought back counts as retried
without a second call, and ``resumed`` says how many runs went on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .._task import Task
from ._resume import RESUMABLE, run_of

__all__ = ["BulkRetry", "is_run_record", "refusal"]


def is_run_record(task: Task[Any]) -> bool:
    """Whether ``task`` is a workflow's run record (a run, not a task)."""
    of = run_of(str(task.id), task.meta)
    return of is not None and of[1]


class Backend(Protocol):
    """What a bulk retry needs of a backend: a retry by id, and a read of a task."""

    async def retry_task(self, id: str) -> bool: ...

    async def get_task(self, id: str) -> Task[Any] | None: ...


class BulkRetry:
    """Retry the selected tasks one by one, resuming the runs their nodes belong to.

    Example::

        bulk = BulkRetry(backend)
        for task in page:
            if bulk.keep(task):
                n += await bulk.retry(str(task.id))
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        #: The run ids resumed so far.
        self.resumed: set[str] = set()
        self._runs: dict[str, str] = {}  # node id -> run id

    def keep(self, task: Task[Any]) -> bool:
        """Whether to retry ``task``: every task but a run record (its nodes resume it)."""
        return self.keep_id(str(task.id), task.meta)

    def keep_id(self, id: str, meta: Mapping[str, Any] | None) -> bool:
        """``keep`` of a stored task, by its id and meta."""
        of = run_of(id, meta)
        if of is None:
            return True
        self._runs[id] = of[0]
        return not of[1]

    async def retry(self, id: str) -> bool:
        """Retry the task ``id`` (``keep`` it first); say whether it runs again.

        A run record given here (by id, not by a filter) resumes its run.
        """
        run = self._runs.get(id)
        if run is None:
            return await self.backend.retry_task(id)
        if run in self.resumed:
            return run != id  # its run's resume brought it back
        before = await self.backend.get_task(run)
        ok = await self.backend.retry_task(id)
        if ok and before is not None and before.status in RESUMABLE:
            self.resumed.add(run)
        return ok


async def refusal(backend: Backend, task: Task[Any]) -> str | None:
    """Say why a retry of a task of a workflow run was refused (None: not a run's task)."""
    of = run_of(str(task.id), task.meta)
    if of is None:
        return None
    run_id, record = of
    run = task if record else await backend.get_task(run_id)
    if run is None:
        return None
    if run.status not in RESUMABLE:
        if record:
            return (
                f"{run_id} is a workflow run ({run.status.value}): only a killed or "
                f"cancelled run can be retried (it resumes from its unfinished nodes)"
            )
        return None
    return (
        f"run {run_id} ({run.status.value}) cannot be resumed now: a node of it is still "
        f"stopping (try again once none is queued or running), or none is left to run again"
    )
