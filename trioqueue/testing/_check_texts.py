"""Conformance checks of what a driver stores beside the status, and of store-wide ids."""

from __future__ import annotations

from .._driver import Outcome
from .._errors import DuplicateTask
from .._task import Status, Task, TaskId
from ._context import _Ctx

__all__ = ["failure_texts", "store_wide_ids"]


async def failure_texts(c: _Ctx) -> None:
    """A failure stores its traceback with its error; a DONE outcome may carry a note."""
    await c.insert(c.task("ft-1", max_attempts=3), c.task("ft-2"), c.task("ft-3"))
    await c.claim("tok", 10)
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad'
    applied = await c.driver.settle(
        [
            Outcome("ft-1", Status.FAILED, error="ValueError: bad", traceback=trace),
            Outcome("ft-2", Status.KILLED, error="RuntimeError: no", traceback=trace + "!"),
            Outcome("ft-3", Status.DONE, error="result not stored: too big"),
        ],
        "tok",
    )
    c.expect(sorted(applied) == ["ft-1", "ft-2", "ft-3"], f"the settle applied {applied}")
    rec = await c.status("ft-1", Status.FAILED, "after settle FAILED")
    c.expect(rec.last_error == "ValueError: bad", f"FAILED stored error {rec.last_error!r}")
    c.expect(rec.traceback == trace, f"FAILED stored traceback {rec.traceback!r}")
    rec = await c.status("ft-2", Status.KILLED, "after settle KILLED")
    c.expect(rec.traceback == trace + "!", f"KILLED stored traceback {rec.traceback!r}")
    rec = await c.status("ft-3", Status.DONE, "after settle DONE with a note")
    c.expect(
        rec.last_error == "result not stored: too big",
        f"a DONE outcome's note was stored as last_error {rec.last_error!r}",
    )
    c.expect(rec.result is None, f"a DONE outcome without a result stored {rec.result!r}")
    # The next attempt of ft-1 succeeds: its last failure's texts stay on record.
    got = await c.claim("tok-2", 10)
    c.expect(got == ["ft-1"], f"the failed task was not claimable again at once: {got}")
    await c.driver.settle([Outcome("ft-1", Status.DONE, result=b"1")], "tok-2")
    rec = await c.status("ft-1", Status.DONE, "after its retry succeeded")
    c.expect(
        rec.last_error == "ValueError: bad" and rec.traceback == trace,
        f"a DONE outcome without a note changed last_error/traceback to "
        f"{rec.last_error!r}/{rec.traceback!r}",
    )


async def store_wide_ids(c: _Ctx) -> None:
    """An id is unique across queues: a push of one another queue holds is refused."""
    other = f"{c.queue}-other"
    tid = await c.backend.push(1, id="sw-1")
    again = await c.backend.push(2, id="sw-1")  # the same queue: skipped, no error
    c.expect(again == tid, f"a second push of id {tid} to its own queue returned {again!r}")
    try:
        await c.backend.push_task(Task(3, id=TaskId("sw-1"), queue=other))
    except DuplicateTask as exc:
        c.expect(
            (exc.id, exc.queue, exc.status) == ("sw-1", c.queue, Status.PENDING),
            f"DuplicateTask named {(exc.id, exc.queue, exc.status)}, "
            f"expected ('sw-1', {c.queue!r}, pending)",
        )
    else:
        raise c.fail(f"a push of id sw-1 to queue {other!r} held by queue {c.queue!r} passed")
    rec = await c.get("sw-1")
    c.expect(rec.queue == c.queue and rec.payload == c.backend.codec.encode(1), "sw-1 changed")
    found = await c.driver.queues_of(["sw-1", "sw-missing"])
    c.expect(
        found == {"sw-1": (c.queue, Status.PENDING)},
        f"queues_of(['sw-1', 'sw-missing']) returned {found!r}",
    )
