"""What ``retry`` does to a task of a workflow run: the policy every driver applies.

A run record is a run, not a task: it is never made PENDING. Retrying a
KILLED or CANCELLED run record, or a FAILED, KILLED or CANCELLED node of such
a run, *resumes* the run (see ``FlowDriver``); anything else is a plain retry
(a FAILED or KILLED task runs again) or refused.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from .._task import Status
from ._records import META_NODE, META_RUN

__all__ = ["RESUMABLE", "RetryKind", "is_record_of", "retry_kind", "run_of"]

#: The statuses of a run record that a resume brings back to RUNNING, and of
#: the tasks of such a run that it makes PENDING again.
RESUMABLE = (Status.KILLED, Status.CANCELLED)
_RERUN = (Status.FAILED, Status.KILLED, Status.CANCELLED)
_PLAIN = (Status.FAILED, Status.KILLED)


class RetryKind(enum.Enum):
    """What a ``retry`` of one task does."""

    #: Refused: nothing changes (``retry`` returns False).
    NO = "no"
    #: A plain retry: the task becomes PENDING now, one more attempt allowed.
    TASK = "task"
    #: The task's run is resumed (``run_of`` names it).
    RUN = "run"


def run_of(id: str, meta: Mapping[str, Any] | None) -> tuple[str, bool] | None:
    """Return ``(run id, is the run record)`` for a task of a workflow run, else None."""
    run = meta.get(META_RUN) if meta else None
    if not isinstance(run, str):
        return None
    assert meta is not None
    record = run == id and META_NODE not in meta
    if not record and META_NODE not in meta:
        return None  # a task that merely carries the key
    return run, record


def is_record_of(run: str, meta: Mapping[str, Any] | None) -> bool:
    """Whether the task ``run`` with ``meta`` is that run's record (not a task that took its id)."""
    return run_of(run, meta) == (run, True)


def retry_kind(
    id: str, status: Status, meta: Mapping[str, Any] | None, run_status: Status | None
) -> RetryKind:
    """Decide what ``retry`` does to the task ``id`` (``run_status``: its run record's, if any).

    ``run_status`` is None when the run record is gone (or its id now holds
    another task: see ``is_record_of``).

    - A run record: resumed if KILLED or CANCELLED, else refused (never PENDING).
    - A FAILED, KILLED or CANCELLED node of a KILLED or CANCELLED run: its run is resumed.
    - Any other task (a node of a RUNNING, DONE or deleted run too): a plain
      retry if FAILED or KILLED, else refused.
    """
    of = run_of(id, meta)
    if of is not None:
        if of[1]:
            return RetryKind.RUN if status in RESUMABLE else RetryKind.NO
        if run_status in RESUMABLE and status in _RERUN:
            return RetryKind.RUN
    return RetryKind.TASK if status in _PLAIN else RetryKind.NO
