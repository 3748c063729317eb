"""The one error hierarchy of trioqueue.

::

    TrioqueueError
    ├── TaskSinkError            a push did not go through
    │   ├── PushError            the backend refused or failed (driver error is __cause__)
    │   │   └── DuplicateTask    the id is taken by a task of another queue
    │   └── CodecError           a value could not be encoded, or a payload decoded
    ├── BackendError             a storage operation failed (driver error is __cause__)
    │   └── BackendClosed        the backend is not open (or no longer)
    ├── HandlerError             a handler or service cannot be built into a worker
    │   (also a TypeError)
    ├── TaskTimeout              an attempt ran past its deadline (TimeoutLayer)
    ├── TaskFailed               wait_result: the task ended KILLED
    └── TaskCancelled            wait_result: the task ended CANCELLED

    Abort(reason)                raised by a handler: kill the task now, no retry
    RetryAfter(seconds)          raised by a handler: retry after that many seconds
    Snooze(seconds)              raised by a handler: run again later, no attempt spent

Driver exceptions (sqlite3, psycopg) never escape: they are translated where the
driver is called, with ``raise ... from exc``.
"""

from __future__ import annotations

from typing import Any

from ._durations import seconds as check_seconds
from ._task import Status, Task

__all__ = [
    "Abort",
    "BackendClosed",
    "BackendError",
    "CodecError",
    "DuplicateTask",
    "HandlerError",
    "PushError",
    "RetryAfter",
    "Snooze",
    "TaskCancelled",
    "TaskFailed",
    "TaskSinkError",
    "TaskTimeout",
    "TrioqueueError",
]


class TrioqueueError(Exception):
    """Base class of every error trioqueue raises on its own account."""


class TaskSinkError(TrioqueueError):
    """A push (``push``, ``push_bulk``, ``push_stream``, ``push_task``, ``push_all``) failed.

    Nothing of a failed push call is acknowledged: tasks of that call may or may
    not have been stored (pushes with a caller-set id are idempotent, so a retry is safe).
    """


class PushError(TaskSinkError):
    """Raised when the backend refused or failed to store pushed tasks.

    The storage driver's own exception, if any, is the ``__cause__``.
    """


class DuplicateTask(PushError):
    """Raised when a pushed task's id is taken.

    Ids are unique across all the queues of a store: an id held by a task of
    another queue always raises; one held in the same queue raises only with
    ``if_exists="raise"`` (the default, ``"skip"``, stores nothing new).

    Attributes:
      id: The id pushed.
      status: The status of the task that holds it.
      queue: The queue of the task that holds it.
    """

    def __init__(self, id: str, status: Status, queue: str, *, other_queue: bool = True) -> None:
        unique = ": ids are unique across the queues of a store" if other_queue else ""
        super().__init__(
            f"task id {id!r} is taken by a {status.value} task of queue {queue!r}{unique}"
        )
        self.id = id
        self.status = status
        self.queue = queue


class CodecError(TaskSinkError):
    """Raised when a value cannot be encoded (at push) or a payload decoded.

    At push time the task is not stored. On the worker side an undecodable
    payload kills that one task with this error's message as its reason.
    """


class BackendError(TrioqueueError):
    """Raised when a storage operation failed after its retries.

    The storage driver's own exception is the ``__cause__``.
    """


class BackendClosed(BackendError):
    """Raised when a backend is used outside its ``async with`` block."""


class HandlerError(TrioqueueError, TypeError):
    """Raised by ``WorkerBuilder.build`` when a handler cannot be resolved.

    The message names the parameter at fault and says what would fix it.
    """


class TaskTimeout(TrioqueueError):
    """An attempt ran past the deadline set by ``TimeoutLayer``.

    It fails the attempt like any other exception, so the retry policy applies.
    """


class Abort(Exception):
    """Raise from a handler to kill the task at once, with no retry.

    Args:
      reason: Stored as the task's ``last_error``.
    """

    def __init__(self, reason: str = "aborted") -> None:
        super().__init__(reason)
        self.reason = reason


class RetryAfter(Exception):
    """Raise from a handler to fail this attempt and retry after ``seconds``.

    The attempt still counts towards ``max_attempts``.

    Args:
      seconds: Delay before the next attempt (``>= 0``).
      reason: Stored as the task's ``last_error``.
    """

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        self.seconds = check_seconds("RetryAfter seconds", seconds)
        self.reason = reason or f"retry requested after {seconds:g}s"
        super().__init__(self.reason)


class Snooze(Exception):
    """Raise from a handler (or a layer) to run the task again later without spending an attempt.

    The task goes back to PENDING, due in ``seconds``; its ``attempts`` is
    given back. A task may snooze ``MAX_SNOOZES`` times; past that, a snooze
    spends an attempt like ``RetryAfter`` (so a task cannot snooze forever
    unnoticed: it ends KILLED once its attempts are spent).

    Args:
      seconds: Delay before it may run again (``>= 0``).
      reason: Why, for logs (not stored).
    """

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        self.seconds = check_seconds("Snooze seconds", seconds)
        self.reason = reason or f"snoozed for {seconds:g}s"
        super().__init__(self.reason)


#: How many times one task may snooze before a snooze spends an attempt.
MAX_SNOOZES = 1000


class TaskFailed(TrioqueueError):
    """``wait_result``: the task ended KILLED (out of attempts, aborted or undecodable).

    Attributes:
      task: The task's final record (``last_error``, ``traceback``...).
    """

    def __init__(self, task: Task[Any]) -> None:
        super().__init__(f"task {task.id} ended {task.status.value}: {task.last_error}")
        self.task = task


class TaskCancelled(TrioqueueError):
    """``wait_result``: the task was cancelled.

    Attributes:
      task: The task's final record.
    """

    def __init__(self, task: Task[Any]) -> None:
        super().__init__(f"task {task.id} was cancelled")
        self.task = task
