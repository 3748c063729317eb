"""The task envelope: ``Task``, ``TaskId``, ``Status``, ``Attempt`` and ``Meta``."""

from __future__ import annotations

import enum
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

__all__ = [
    "MAX_TIMESTAMP",
    "Attempt",
    "Meta",
    "Status",
    "Task",
    "TaskId",
    "from_timestamp",
    "to_timestamp",
]

Args = TypeVar("Args")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_head = ""  # the first 22 characters of the last id
_head_of = -1  # the random bits above the last 20 that ``_head`` encodes
_RAND_MASK = (1 << 80) - 1
_last_ms = 0
_last_rand = 0


def _forget_last_id() -> None:
    # A forked child must not continue the parent's sequence within the same
    # millisecond: it would make the ids its siblings make.
    global _last_ms, _last_rand, _head_of
    _last_ms = _last_rand = 0
    _head_of = -1


os.register_at_fork(after_in_child=_forget_last_id)


class TaskId(str):
    """A task's identifier: a string, time-sortable when generated.

    ``TaskId.new()`` makes a ULID (26 characters, Crockford base32: 48 bits of
    milliseconds then 80 bits that increase within a millisecond), so ids made
    later sort later. Callers may use any non-empty string of at most 255
    characters instead, which makes a push idempotent: pushing an id that
    already exists stores nothing new.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> TaskId:
        if not isinstance(value, str):
            raise TypeError(f"a task id must be a str, got {type(value).__name__}")
        if not value or len(value) > 255 or "\x00" in value:
            raise ValueError("a task id must be 1 to 255 characters, without NUL")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a task id must be UTF-8 text (it holds a lone surrogate)") from None
        return super().__new__(cls, value)

    @classmethod
    def new(cls) -> TaskId:
        """Return a fresh, time-sortable id (a monotonic ULID)."""
        global _last_ms, _last_rand, _head, _head_of
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            rand = (_last_rand + 1) & _RAND_MASK
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1
            _last_ms = ms
            _head_of = -1
        _last_rand = rand
        # 48 bits of time (10 characters, the top two bits zero) and the upper
        # 60 random bits (12 characters) change rarely within a millisecond:
        # they are kept, and only the last 20 bits are encoded for each id.
        if rand >> 20 != _head_of:
            _head_of = rand >> 20
            _head = "".join(
                [_PAIRS[(_last_ms >> shift) & 1023] for shift in (40, 30, 20, 10, 0)]
                + [_PAIRS[(rand >> shift) & 1023] for shift in (70, 60, 50, 40, 30, 20)]
            )
        return str.__new__(cls, _head + _PAIRS[(rand >> 10) & 1023] + _PAIRS[rand & 1023])


class Status(enum.StrEnum):
    """Where a task is in its life.

    - ``PENDING``: stored, waiting for its ``run_at`` and a free worker.
    - ``QUEUED``: claimed under a lease into a worker's prefetch buffer.
    - ``RUNNING``: its handler is running.
    - ``DONE``: finished; ``result`` holds the handler's return value.
    - ``FAILED``: an attempt failed and another is scheduled at ``run_at``.
    - ``KILLED``: no attempts left, aborted, or its payload is undecodable.
    - ``CANCELLED``: cancelled before it ran.
    """

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether no further attempt will happen (DONE, KILLED, CANCELLED)."""
        return self in _FINAL


_FINAL = frozenset({Status.DONE, Status.KILLED, Status.CANCELLED})


class Attempt(int):
    """The number of the attempt running now: 1 for the first run.

    Ask for it in a handler with a parameter annotated ``Attempt``.
    """

    __slots__ = ()


class Meta(dict[str, Any]):
    """A task's headers: a JSON-able ``dict`` of ``str`` keys.

    Ask for it in a handler with a parameter annotated ``Meta``.
    """

    __slots__ = ()


#: POSIX seconds of 9999-12-31T23:59:59Z, the last time a ``datetime`` holds.
MAX_TIMESTAMP = 253402300799.0


def to_timestamp(when: datetime) -> float:
    """Return POSIX seconds for an aware datetime (naive ones are refused)."""
    if when.tzinfo is None:
        raise ValueError("run_at must be timezone-aware (use datetime.now(UTC) + timedelta(...))")
    return when.timestamp()


def from_timestamp(ts: float) -> datetime:
    """Return the UTC datetime of POSIX seconds ``ts``."""
    return datetime.fromtimestamp(ts, UTC)


@dataclass(slots=True, eq=False)
class Task(Generic[Args]):
    """The envelope of one unit of background work.

    ``Task(args)`` builds one for ``push_task``; workers hand a filled one to
    services and to handlers that ask for ``Task[Args]``.

    Attributes:
      args: The handler's input, decoded into the handler's type on the worker.
      id: A ``TaskId``; generated if not given.
      queue: The queue name; ``None`` means the backend's queue.
      attempts: Attempts made so far (counting the one running now).
      max_attempts: Attempts allowed in all (default 25).
      run_at: When it may run (aware UTC datetime); ``None`` means now.
      priority: Higher runs first (default 0).
      meta: JSON-able headers.
      status: A ``Status``.
      last_error: The reason of the last failure, if any.
      result: The handler's return value once ``DONE``.
      traceback: The bounded traceback of the last failure, if any
        (``last_error`` is its one-line ``Type: message``).
      created_at: When it was stored (UTC), None before.
      started_at: When its latest attempt began running, None before.
      finished_at: When it became DONE, KILLED or CANCELLED, None before.
      worker: Name of the worker that ran (or holds) the latest attempt.
      progress: The last value a handler reported with ``Progress.set``.
    """

    args: Args
    id: TaskId = field(default_factory=TaskId.new)
    queue: str | None = None
    attempts: int = 0
    max_attempts: int = 25
    run_at: datetime | None = None
    priority: int = 0
    meta: Meta = field(default_factory=Meta)
    status: Status = Status.PENDING
    last_error: str | None = None
    result: Any = None
    traceback: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    progress: Any = None

    @property
    def attempt(self) -> Attempt:
        """The current attempt number (``attempts``, at least 1)."""
        return Attempt(max(self.attempts, 1))

    def __repr__(self) -> str:
        return (
            f"<Task {self.id} queue={self.queue!r} status={self.status.value} "
            f"attempts={self.attempts}/{self.max_attempts} priority={self.priority}>"
        )
