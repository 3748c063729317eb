"""What both clients share: records built and checked as ``TaskSink`` builds them, the
verdict on ids that were taken, results read back, and the URL's kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from .._admin import Administration
from .._codec import Codec, JsonCodec
from .._driver import RetentionRule, StoredTask
from .._errors import DuplicateTask, TaskCancelled, TaskFailed
from .._lifecycle import Retention, retention_of, rule_in_effect, rule_of
from .._sink import IfExists, TaskSink, _if_exists, check_queue_name
from .._task import Status, Task

__all__ = [
    "Encoder",
    "Held",
    "check_taken",
    "final_result",
    "retention_shown",
    "rule_to_store",
    "url_kind",
]

#: The queue and status of each stored task among some ids.
Held = Mapping[str, tuple[str, Status]]

#: The first pause of a SQLite client's ``wait_result`` between two reads, and the longest.
POLL_MIN = 0.005
POLL_MAX = 0.25
#: The longest a PostgreSQL client's ``wait_result`` waits for a notification before reading.
LISTEN_MAX = 1.0


def url_kind(url: object) -> Literal["sqlite", "postgresql"]:
    """Return which store a client URL names.

    Raises:
      TypeError: if ``url`` is not a ``str``.
      ValueError: for ``memory://`` (a process's own memory: no client can reach it)
        and any other scheme.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    scheme = url.partition(":")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme == "memory":
        raise ValueError(
            "memory:// lives inside one Trio process: a client needs sqlite:///path.db "
            "or postgresql://... (in tests of Trio code, use the memory backend itself)"
        )
    raise ValueError(
        f"a client URL is sqlite:///path.db or postgresql://user@host/db, got {url[:60]!r}"
    )


class Encoder(TaskSink[Any], Administration):
    """Builds a client's records with ``TaskSink``'s own checks and shows stored ones as tasks.

    Only the record building of ``TaskSink`` and ``Administration._to_task``
    are used: a client stores records itself.
    """

    def __init__(self, *, queue: str, codec: Codec | None) -> None:
        self.queue = check_queue_name(queue)
        self.codec = codec if codec is not None else JsonCodec()

    def _now(self) -> float:
        return time.time()

    def one(
        self,
        args: Any,
        *,
        delay: float | None,
        run_at: datetime | None,
        priority: int,
        max_attempts: int,
        id: str | None,
        meta: dict[str, Any] | None,
        queue: str | None = None,
    ) -> StoredTask:
        """Return the record ``push`` stores (raises as ``TaskSink.push`` does)."""
        return self._record(
            args,
            now=self._now(),
            delay=delay,
            run_at=run_at,
            priority=priority,
            max_attempts=max_attempts,
            id=id,
            meta=meta,
            queue=queue,
        )

    def many(self, items: Iterable[Any]) -> list[StoredTask]:
        """Return the records ``push_bulk`` stores, every item encoded first."""
        if isinstance(items, str | bytes | dict):
            raise TypeError("push_bulk takes an iterable of task args, not a single value")
        now = self._now()
        return [self._plain_record(a, now) for a in items]

    @staticmethod
    def if_exists(value: object) -> IfExists:
        """Return ``value`` if it is a valid ``if_exists``, else raise ``ValueError``."""
        return _if_exists(value)

    def task(self, rec: StoredTask) -> Task[Any]:
        """Return a stored record as a ``Task``, args and result as plain data."""
        return self._to_task(rec)


def check_taken(records: list[StoredTask], stored: int, held: Held, if_exists: IfExists) -> None:
    """Raise what a push of ``records`` raises when fewer than all were ``stored``.

    ``held`` is the queue and status of the ids that were there (read in the
    insert's transaction). The rules are ``Backend``'s: an id held by a task
    of another queue raises ``DuplicateTask`` (unless it was final and
    replaced); one held in the same queue raises only with ``"raise"``.
    """
    if stored >= len(records):
        return
    for r in records:
        queue, status = held.get(r.id, (r.queue, None))
        if status is None or queue == r.queue:
            continue
        if not (if_exists == "replace_finished" and status.is_final):
            raise DuplicateTask(r.id, status, queue)
    if if_exists == "raise":
        for r in records:
            if r.id in held:
                queue, status = held[r.id]
                raise DuplicateTask(r.id, status, queue, other_queue=queue != r.queue)


def rule_to_store(queue: str, retention: Retention | None) -> tuple[str, RetentionRule]:
    """Return the checked queue name and the rule a client's ``set_retention`` stores.

    Raises:
      TypeError, ValueError: as ``Backend.set_retention`` (nothing is stored).
    """
    rule = rule_of(retention)
    return check_queue_name(queue), rule


def retention_shown(queue: str, stored: dict[str, RetentionRule]) -> Retention | None:
    """Return a client's answer to ``retention(queue)``: its stored rule, else ``Retention()``.

    A client runs no worker and has no default of its own: a queue with no
    stored rule shows the default of ``open_backend`` and the command line.
    """
    return retention_of(rule_in_effect(stored.get(queue), Retention()))


def final_result(encoder: Encoder, rec: StoredTask, type: Any) -> Any:
    """Return the decoded result of a final task, or raise ``TaskFailed``/``TaskCancelled``."""
    if rec.status is Status.KILLED:
        raise TaskFailed(encoder.task(rec))
    if rec.status is Status.CANCELLED:
        raise TaskCancelled(encoder.task(rec))
    if rec.result is None:
        return None
    return encoder.codec.decoder(Any if type is None else type)(bytes(rec.result))


def no_task(id: str) -> LookupError:
    """The error of ``wait_result`` for an id that names no task."""
    return LookupError(f"no task {id!r} (never pushed, or deleted)")
