"""The outcome policy: how the end of one attempt becomes what storage records.

A pure decision, made in one place. The worker calls ``decide`` once per
attempt and then counts, logs and emits events from the ``Verdict``; the
layers that report outcomes (``LogLayer``, ``MetricsLayer``, ``TraceLayer``)
call the same function, so they name exactly what the worker will record.

The labels::

    done       the handler returned                     -> DONE, result stored
    failed     it raised; another attempt is scheduled  -> FAILED, run_at = now + backoff
    retry      it raised RetryAfter(seconds)            -> FAILED, run_at = now + seconds
    killed     Abort, an undecodable payload, or a
               failure of the last attempt              -> KILLED
    snoozed    it raised Snooze(seconds)                -> PENDING, run_at = now + seconds,
                                                           attempt given back
    cancelled  cancel_task asked while it ran           -> CANCELLED, no retry
    released   cancelled by a shutdown, or from outside
               the worker                               -> given back, attempt uncounted

A cancellation by the attempt's own deadline (``WorkerBuilder.timeout``, a
``TimeoutLayer``) is a failed attempt (``TaskTimeout``); any other
cancellation, an outer ``move_on_after`` included, is a shutdown. The caller
says which (``_boundary.own_deadline``): Trio's ``Cancelled.source`` is
``"deadline"`` for both.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from typing import Final

import trio

from ._backoff import Backoff
from ._driver import Outcome
from ._errors import MAX_SNOOZES, Abort, RetryAfter, Snooze, TaskTimeout
from ._task import Status

__all__ = [
    "CANCELLED",
    "CANCELLED_VERDICT",
    "DONE",
    "DONE_VERDICT",
    "FAILED",
    "KILLED",
    "LABELS",
    "MAX_ERROR",
    "MAX_TRACEBACK",
    "RELEASED",
    "RETRY",
    "SNOOZED",
    "Verdict",
    "bounded",
    "decide",
    "format_traceback",
    "reason",
    "storable",
    "undecodable",
]

DONE: Final = "done"
FAILED: Final = "failed"
RETRY: Final = "retry"
KILLED: Final = "killed"
RELEASED: Final = "released"
SNOOZED: Final = "snoozed"
CANCELLED: Final = "cancelled"
#: Every label, in a stable order (metrics publish one series per label).
LABELS: Final = (DONE, FAILED, RETRY, KILLED, RELEASED, SNOOZED, CANCELLED)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one attempt's end comes to.

    Attributes:
      label: One of ``LABELS``.
      status: What to record: DONE, FAILED (the driver makes it KILLED when no
        attempt is left) or KILLED; None for a release.
      reason: The one-line reason stored as ``last_error`` (None for done/released).
      delay: Seconds until the next attempt, for FAILED.
      error: The exception that ended the attempt, if any.
      traceback: The bounded traceback of ``error`` (None for done/released
        and for ``Abort``, which is no failure of the code).
    """

    label: str
    status: Status | None
    reason: str | None = None
    delay: float = 0.0
    error: BaseException | None = None
    traceback: str | None = None

    def outcome(self, id: str, result: bytes | None = None) -> Outcome | None:
        """Return the ``Outcome`` to settle for task ``id`` (None: release it)."""
        if self.status is None:
            return None
        if self.status is Status.DONE:
            return Outcome(id, Status.DONE, result=result)
        return Outcome(
            id, self.status, error=self.reason, delay=self.delay, traceback=self.traceback
        )


#: The verdict on every attempt that returned.
DONE_VERDICT: Final = Verdict(DONE, Status.DONE)
#: The verdict on an attempt whose task was cancelled by ``cancel_task`` while it ran.
CANCELLED_VERDICT: Final = Verdict(
    CANCELLED, Status.CANCELLED, "Cancelled: cancel_task while it was running"
)


def reason(exc: BaseException) -> str:
    """Return ``Type: message`` (or ``Type``), the one-line text of a failure."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: The longest ``last_error`` stored and logged, in characters.
MAX_ERROR: Final = 4000
#: The longest traceback stored and logged, in characters.
MAX_TRACEBACK: Final = 16000


def bounded(text: str, limit: int = MAX_ERROR) -> str:
    """Return ``text`` made ``storable``, cut to at most ``limit`` characters.

    A longer text keeps its head and its tail (where a traceback names the
    exception) around a marker saying how much was left out:
    ``... [truncated: 10,000,012 characters, 9,996,081 left out] ...``.
    """
    text = storable(text)
    if len(text) <= limit:
        return text
    sep = "\n" if "\n" in text[:limit] else " "
    marker = f"{sep}... [truncated: {len(text):,} characters, {{}} left out] ...{sep}"
    keep = max(0, limit - len(marker) - 12)
    head = keep - keep // 2
    tail = text[len(text) - keep // 2 :] if keep // 2 else ""
    return text[:head] + marker.format(f"{len(text) - keep:,}") + tail


def format_traceback(exc: BaseException, limit: int = MAX_TRACEBACK) -> str:
    """Return the traceback of ``exc`` (with its causes) as text of at most ``limit`` characters."""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception as fail:  # a __str__ that raises: the traceback without its text
        text = f"{type(exc).__name__} (its traceback could not be formatted: {type(fail).__name__})"
    return bounded(text, limit)


def storable(text: str) -> str:
    """Return ``text`` as every backend can store it: no NUL, no lone surrogate."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def decide(
    attempts: int,
    max_attempts: int,
    exc: BaseException | None,
    *,
    backoff: Backoff | None = None,
    timeout: float | None = None,
    with_traceback: bool = False,
    snoozes: int = 0,
    timed_out: bool = False,
) -> Verdict:
    """Decide what an attempt that ended with ``exc`` (None: it returned) comes to.

    Args:
      attempts: The attempt's number (1-based), as the task carries it.
      max_attempts: The task's ``max_attempts``.
      exc: What the service raised, or None.
      backoff: The worker's retry delay policy (None: no delay, for callers
        that only need the label).
      timeout: The worker's per-attempt timeout, named in the reason of an
        attempt its deadline cancelled.
      with_traceback: Also format the failure's bounded traceback (the
        worker stores it; callers that need only the label leave it off).
        An attempt its deadline cancelled shows where it was waiting.
      snoozes: How many times the task snoozed before: past ``MAX_SNOOZES``
        a ``Snooze`` spends the attempt like ``RetryAfter``.
      timed_out: Whether a ``trio.Cancelled`` ``exc`` is the attempt's own
        deadline (``TaskTimeout``); else it is released like a shutdown.

    Returns:
      The ``Verdict``; pure apart from the jitter ``backoff`` may draw.
    """
    if exc is None:
        return DONE_VERDICT
    last = attempts >= max_attempts
    if isinstance(exc, trio.Cancelled):
        if not timed_out:
            return Verdict(RELEASED, None, error=exc)
        within = f" {timeout:g}s" if timeout is not None else ""
        cancelled, exc = exc, TaskTimeout(f"attempt {attempts} ran past its{within} deadline")
        exc.__cause__ = cancelled  # its traceback: where the attempt was waiting
    elif not isinstance(exc, Exception):
        return Verdict(RELEASED, None, error=exc)  # KeyboardInterrupt and the like
    if isinstance(exc, Abort):
        return Verdict(KILLED, Status.KILLED, bounded(f"aborted: {exc.reason}"), error=exc)
    if isinstance(exc, Snooze):
        if snoozes < MAX_SNOOZES:
            return Verdict(SNOOZED, Status.PENDING, None, exc.seconds, exc)
        label, text, delay = (
            RETRY,
            f"{exc.reason} (past {MAX_SNOOZES} snoozes: counted)",
            exc.seconds,
        )
    elif isinstance(exc, RetryAfter):
        label, text, delay = RETRY, exc.reason, exc.seconds
    else:
        label, text = FAILED, reason(exc)
        delay = 0.0 if backoff is None else backoff.delay(attempts)
    if not math.isfinite(delay) or delay < 0:
        delay = 0.0
    return Verdict(
        KILLED if last else label,
        Status.FAILED,
        bounded(text),
        delay,
        exc,
        format_traceback(exc) if with_traceback and label != RETRY else None,
    )


def undecodable(exc: BaseException) -> Verdict:
    """The verdict on a task whose payload does not decode into the handler's type."""
    return Verdict(KILLED, Status.KILLED, bounded(f"undecodable payload: {exc}"), error=exc)
