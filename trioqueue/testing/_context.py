"""What the conformance checks share: the factory type, a hand-moved clock, a check's context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .._backend import Backend
from .._driver import StoredTask
from .._task import Status

__all__ = ["START", "BackendFactory", "Check", "ManualClock"]

#: A factory ``open_backend(**options)`` returning an async context manager that
#: yields a fresh, empty ``Backend``; options include ``queue=`` and ``clock=``.
BackendFactory = Callable[..., AbstractAsyncContextManager[Backend]]

#: Where every check's clock starts (POSIX seconds, exactly representable).
START = 1_700_000_000.0


class ManualClock:
    """A clock for drivers that only moves when told: call it for the time.

    Example::

        clock = ManualClock()
        async with open_backend(clock=clock) as backend:
            clock.advance(30)

    Args:
      start: The initial time, POSIX seconds.
    """

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (``>= 0``)."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now!r})"


class _Ctx:
    """One check's state: its name, clock, backend and failure helper."""

    def __init__(self, name: str, clock: ManualClock, backend: Backend) -> None:
        self.name = name
        self.clock = clock
        self.backend = backend
        self.driver = backend.driver
        self.queue = backend.queue

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"[{self.name}] {message}")

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise self.fail(message)

    def task(self, id: str, **fields: Any) -> StoredTask:
        fields.setdefault("queue", self.queue)
        fields.setdefault("payload", b'"' + id.encode() + b'"')
        fields.setdefault("run_at", self.clock.now)
        fields.setdefault("created_at", self.clock.now)
        return StoredTask(id=id, **fields)

    async def insert(self, *tasks: StoredTask) -> None:
        n = await self.driver.insert(list(tasks))
        self.expect(n == len(tasks), f"insert of {len(tasks)} new task(s) reported {n} stored")

    async def get(self, id: str) -> StoredTask:
        rec = await self.driver.get(id)
        if rec is None:
            raise self.fail(f"task {id} was lost: get() returned None")
        return rec

    async def claim(
        self,
        token: str,
        limit: int = 10,
        lease: float = 30.0,
        queue: str | None = None,
        worker: str = "",
    ) -> list[str]:
        recs = await self.driver.claim(queue or self.queue, limit, token, lease, worker=worker)
        return [r.id for r in recs]

    async def status(self, id: str, want: Status, why: str) -> StoredTask:
        rec = await self.get(id)
        self.expect(
            rec.status is want,
            f"task {id} is {rec.status.value} {why}, expected {want.value}",
        )
        return rec

    def leased(self, rec: StoredTask, token: str | None, why: str) -> None:
        self.expect(
            rec.lease_token == token,
            f"task {rec.id} has lease token {rec.lease_token!r} {why}, expected {token!r}",
        )
        if token is None:
            self.expect(
                rec.lease_expires_at is None,
                f"task {rec.id} kept a lease expiry {rec.lease_expires_at!r} {why}",
            )

    def near(self, got: float | None, want: float, what: str) -> None:
        self.expect(
            got is not None and abs(got - want) < 1e-3,
            f"{what} is {got!r}, expected {want!r} (clock at {self.clock.now!r})",
        )


Check = Callable[[_Ctx], Awaitable[None]]


# -- the checks, in the order they run --
