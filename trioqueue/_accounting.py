"""What a worker does with each attempt's verdict: count it, log it, emit its event.

A mixin of ``Worker`` (the one place where an attempt's end is accounted),
with the encoding of a result that may not encode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ._context import EventKind
from ._errors import Snooze
from ._outcome import (
    CANCELLED_VERDICT,
    DONE_VERDICT,
    KILLED,
    RELEASED,
    SNOOZED,
    Verdict,
    bounded,
    decide,
    undecodable,
)
from ._records import Outcome, StoredTask
from ._task import Status

__all__ = ["OTHER_CODEC_SNOOZE", "Accounting"]

#: Seconds a task pushed with another codec snoozes before a worker looks again.
OTHER_CODEC_SNOOZE = 60.0

log = logging.getLogger("trioqueue.worker")


class Accounting:
    """The verdict accounting of ``Worker`` (see there)."""

    name: str
    _codec_name: str
    _encode: Callable[[Any], bytes]
    _callbacks: list[Any]
    _done: int
    _failed: int
    _killed: int
    _released: int

    if TYPE_CHECKING:

        def _emit(self, kind: EventKind, **fields: Any) -> None: ...

    def _done_outcome(self, rec: StoredTask, result: Any) -> Outcome:
        """Return the DONE outcome of a task, its result encoded (or why it was not stored)."""
        if result is None:
            return Outcome(rec.id, Status.DONE)
        try:
            return Outcome(rec.id, Status.DONE, self._encode(result))
        except Exception as exc:  # the task did its work: DONE, without a result
            note = bounded(f"result not stored: {exc}")
            log.warning("%s: task %s: %s", self.name, rec.id, note)
            return Outcome(rec.id, Status.DONE, None, error=note)

    def _account(self, rec: StoredTask, verdict: Verdict, result: Any) -> None:
        """Count, log and emit the event of one attempt's verdict: the one place."""
        if verdict is DONE_VERDICT:
            self._done += 1
            if self._callbacks:
                self._emit(EventKind.TASK_DONE, task_id=rec.id, attempt=rec.attempts, result=result)
            return
        label = verdict.label
        if label == RELEASED:
            self._released += 1
            return
        if label == SNOOZED:
            log.info("%s: task %s snoozed for %.3gs", self.name, rec.id, verdict.delay)
            return
        if verdict is CANCELLED_VERDICT:
            log.info("%s: task %s cancelled while running", self.name, rec.id)
            return
        if label == KILLED:
            self._killed += 1
            log.error(
                "%s: task %s killed at attempt %d: %s",
                self.name,
                rec.id,
                rec.attempts,
                verdict.reason,
                extra={"traceback": verdict.traceback},
            )
            kind = EventKind.TASK_KILLED
        else:
            self._failed += 1
            log.warning(
                "%s: task %s attempt %d failed, retry in %.3gs: %s",
                self.name,
                rec.id,
                rec.attempts,
                verdict.delay,
                verdict.reason,
                extra={"traceback": verdict.traceback},
            )
            kind = EventKind.TASK_FAILED
        if self._callbacks:
            self._emit(kind, task_id=rec.id, attempt=rec.attempts, error=verdict.error)

    def _undecodable(self, rec: StoredTask, exc: Exception, pushed: str | None) -> Verdict:
        """The verdict on a payload this worker's codec does not decode.

        A payload with no codec named was pushed with JSON (or before codecs
        were named): if this worker's codec is another and the payload is
        JSON, it is left for a JSON worker; otherwise it is undecodable.
        """
        if pushed is None and self._codec_name != "json" and _is_json(rec.payload):
            return self._other_codec(rec, "json")
        return undecodable(exc)

    def _other_codec(self, rec: StoredTask, pushed: str) -> Verdict:
        """The verdict on a task pushed with another codec: left for a worker that has it.

        It snoozes (no attempt spent) instead of being taken for undecodable
        and killed; past ``MAX_SNOOZES`` the snoozes spend its attempts.
        """
        log.error(
            "%s: task %s was pushed with the %r codec and this worker decodes %r: "
            "left for a worker with that codec (snoozed %gs)",
            self.name,
            rec.id,
            pushed,
            self._codec_name,
            OTHER_CODEC_SNOOZE,
        )
        reason = f"pushed with the {pushed!r} codec, not this worker's {self._codec_name!r}"
        return decide(
            rec.attempts,
            rec.max_attempts,
            Snooze(OTHER_CODEC_SNOOZE, reason),
            snoozes=rec.snoozes,
        )


def _is_json(payload: bytes) -> bool:
    try:
        msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False
    return True
