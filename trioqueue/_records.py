"""The records a driver stores and returns, and the settle rules they follow.

``StoredTask`` (a task as storage holds it), ``Outcome`` (how a claimed task
ended), ``Extended``, ``WorkerRecord`` and ``RetentionRule`` (a queue's stored
retention); ``apply_outcome``, the reference of the settle rules, and
``to_task``, a record as the ``Task`` users see.
``_driver.py`` re-exports them with the ``Driver`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from ._task import MAX_TIMESTAMP, Meta, Status, Task, TaskId, from_timestamp

__all__ = [
    "CANCEL_REQUESTED",
    "Extended",
    "Outcome",
    "RetentionRule",
    "StoredTask",
    "WorkerRecord",
    "apply_outcome",
    "to_task",
]


@dataclass(slots=True, eq=False)
class StoredTask:
    """A task as storage holds it: the payload is still encoded.

    Times are POSIX seconds (floats, sub-second precision) on the driver's clock.
    """

    id: str
    queue: str
    payload: bytes
    status: Status = Status.PENDING
    attempts: int = 0
    max_attempts: int = 25
    run_at: float = 0.0
    priority: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    result: bytes | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    traceback: str | None = None
    #: When the latest attempt began running (None until one did).
    started_at: float | None = None
    #: Name of the worker that claimed the latest attempt.
    worker: str | None = None
    #: The last progress a handler reported, as JSON text.
    progress: str | None = None
    #: How many times the task snoozed (``Snooze``); snoozes spend no attempt.
    snoozes: int = 0
    #: A cancellation was asked while the task was QUEUED or RUNNING: the
    #: worker holding it must cancel it, and whatever it settles, releases or
    #: a rescue finds, the task ends CANCELLED.
    cancel_requested: bool = False


@dataclass(slots=True)
class Extended:
    """What a lease extension found: the leases still held, and which of them must stop.

    Attributes:
      held: Ids whose lease is still held (the others were lost).
      cancel: Ids among ``held`` whose cancellation was requested.
    """

    held: list[str]
    cancel: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WorkerRecord:
    """A live worker as storage holds it (times are POSIX seconds, driver clock)."""

    name: str
    host: str
    pid: int
    queue: str
    concurrency: int
    running: int
    started_at: float
    last_seen: float = 0.0


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """A queue's retention as storage holds it: seconds each final status is kept.

    None keeps that status forever; a rule of three Nones keeps everything.
    A queue with no stored rule follows each process's default instead.
    """

    done: float | None
    killed: float | None
    cancelled: float | None


def to_task(
    rec: StoredTask, args: Any, result: Any = None, status: Status | None = None
) -> Task[Any]:
    """Return the ``Task`` a stored record stands for, with its args (and result) decoded.

    Args:
      rec: The stored record.
      args: Its payload, decoded by the caller.
      result: Its result, decoded by the caller.
      status: The status to show instead of the stored one (a worker shows RUNNING).
    """
    run_at = rec.run_at
    if not 0.0 <= run_at <= MAX_TIMESTAMP:  # a hostile row must not break a listing
        run_at = min(max(run_at, 0.0), MAX_TIMESTAMP)
    return Task(
        args,
        str.__new__(TaskId, rec.id),  # checked when it was pushed
        rec.queue,
        rec.attempts,
        rec.max_attempts,
        _datetime(run_at),
        rec.priority,
        Meta(rec.meta),
        rec.status if status is None else status,
        rec.last_error,
        result,
        rec.traceback,
        # Inline checks: this runs once per task a worker starts.
        None if not rec.created_at else _when(rec.created_at),
        None if rec.started_at is None else _when(rec.started_at),
        None if rec.finished_at is None else _when(rec.finished_at),
        rec.worker,
        None if rec.progress is None else _progress(rec.progress),
    )


def _when(ts: float | None) -> datetime | None:
    if ts is None or not 0.0 < ts <= MAX_TIMESTAMP:  # 0: never stored (an old record)
        return None
    return _datetime(ts)


#: Datetimes of recent timestamps: the tasks of one bulk push share their
#: creation time and run_at, and a worker makes a ``Task`` of each. A
#: datetime is immutable, so one object serves them all.
_DATETIMES: dict[float, datetime] = {}
_DATETIMES_MAX = 256


def _datetime(ts: float) -> datetime:
    dt = _DATETIMES.get(ts)
    if dt is None:
        if len(_DATETIMES) >= _DATETIMES_MAX:
            _DATETIMES.clear()
        dt = _DATETIMES[ts] = from_timestamp(ts)
    return dt


def _progress(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:  # a hostile row must not break a listing
        return text


@dataclass(slots=True)
class Outcome:
    """How one claimed task ended, to be settled under its lease.

    ``status`` is DONE (with ``result``, and ``error`` when it carries a
    note such as why the result was not stored), FAILED (with ``error`` and ``delay``,
    the seconds until the next attempt), KILLED (with ``error``), CANCELLED,
    or PENDING for a snooze (``delay`` seconds; the attempt is given back:
    ``attempts`` - 1, ``snoozes`` + 1).
    A driver turns FAILED into KILLED itself when ``attempts >= max_attempts``,
    and any outcome into CANCELLED when the task's cancellation was requested.
    ``traceback`` is the failure's bounded traceback, stored with ``error``
    (None when the failure has none, e.g. ``Abort``). ``started_at`` is when
    the attempt began (stored when not None); ``progress`` the last progress
    reported and not yet stored (JSON text, stored when not None).
    """

    id: str
    status: Status
    result: bytes | None = None
    error: str | None = None
    delay: float = 0.0
    traceback: str | None = None
    started_at: float | None = None
    progress: str | None = None


def apply_outcome(task: StoredTask, outcome: Outcome, now: float) -> None:
    """Apply the settle rules of the contract to a record held in Python.

    For drivers that keep records as Python objects (the memory driver, a
    file-backed one): clears the lease; DONE stores the result; FAILED stores
    the error and moves ``run_at`` to ``now + delay``, or becomes KILLED when
    no attempt is left; KILLED and CANCELLED store the error; PENDING (a
    snooze) moves ``run_at`` and gives the attempt back. A task whose
    cancellation was requested ends CANCELLED whatever the outcome. Final
    statuses get ``finished_at``. The caller checks the lease first.
    """
    task.lease_token = task.lease_expires_at = None
    if outcome.started_at is not None:
        task.started_at = outcome.started_at
    if outcome.progress is not None:
        task.progress = outcome.progress
    status = outcome.status
    if status is Status.DONE and not task.cancel_requested:  # the common case, first
        task.status = status
        task.result = outcome.result
        if outcome.error is not None:  # a note: the result was not stored
            task.last_error = outcome.error
        task.finished_at = now
        return
    if task.cancel_requested:
        status = Status.CANCELLED
    elif status is Status.FAILED and task.attempts >= task.max_attempts:
        status = Status.KILLED
    task.status = status
    if status is Status.DONE:
        task.result = outcome.result
        if outcome.error is not None:  # a note: the result was not stored
            task.last_error = outcome.error
    elif status is Status.PENDING:
        task.attempts = max(0, task.attempts - 1)
        task.snoozes += 1
    elif status is Status.CANCELLED and task.cancel_requested:
        task.last_error = outcome.error or CANCEL_REQUESTED
        task.traceback = outcome.traceback
    else:
        task.last_error = outcome.error
        task.traceback = outcome.traceback
    if status in (Status.FAILED, Status.PENDING):
        task.run_at = now + max(0.0, outcome.delay)
    else:
        task.finished_at = now
        task.cancel_requested = False


#: ``last_error`` of a task cancelled while QUEUED or RUNNING (when its worker gave none).
CANCEL_REQUESTED = "Cancelled: cancellation requested while it was claimed"
