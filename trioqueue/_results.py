"""Following tasks to their end: ``wait_result`` and ``watch``, on one shared reader.

Every waiter of a backend registers the id it follows with one background
reader (started on the first waiter, gone with the last). The reader reads
all followed tasks in one batched ``get_many``, wakes the waiters whose task
changed (status, attempts or progress), then sleeps on the driver's
``wait_for_change`` (PostgreSQL: a notification; SQLite: the file's wake-up;
memory: an event), at most ``FOLLOW_POLL`` seconds, and reads again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ._driver import Driver, StoredTask
from ._errors import BackendClosed, BackendError, TaskCancelled, TaskFailed
from ._retrying import retrying
from ._task import Status, Task

__all__ = ["FOLLOW_POLL", "Results"]

#: The longest the shared reader sleeps between two reads (a missed signal costs at most this).
FOLLOW_POLL = 1.0

_Key = tuple[Status, int, str | None]


def _key(rec: StoredTask) -> _Key:
    return rec.status, rec.attempts, rec.progress


class _Follower:
    __slots__ = ("changed", "error", "gone", "rec")

    def __init__(self) -> None:
        self.changed = trio.Event()
        self.rec: StoredTask | None = None
        self.gone = False  # the task does not exist (or no longer)
        self.error: BaseException | None = None


class _Nursery(Protocol):
    def start_soon(self, fn: Any, *args: Any) -> None: ...


class Results:
    """``wait_result`` and ``watch`` of ``Backend`` (see there)."""

    driver: Driver
    transient: tuple[type[BaseException], ...]
    _nursery: _Nursery | None

    codec: Any

    if TYPE_CHECKING:

        def _to_task(self, rec: StoredTask) -> Task[Any]: ...

    def _init_results(self) -> None:
        self._followers: dict[str, list[_Follower]] = {}
        self._reader_running = False
        self._reader_wait: trio.CancelScope | None = None

    async def _reader(self) -> None:
        try:
            while self._followers:
                ids = list(self._followers)
                try:
                    recs = await retrying(
                        "read followed tasks",
                        self.driver.get_many,
                        ids,
                        transient=self.transient,
                        attempts=5,
                    )
                except BackendError as exc:
                    for fs in self._followers.values():
                        for f in fs:
                            f.error = exc
                            f.changed.set()
                    self._followers.clear()
                    return
                by = {r.id: r for r in recs}
                for id in ids:
                    rec = by.get(id)
                    for f in self._followers.get(id, ()):
                        if rec is None:
                            f.gone = True
                            f.changed.set()
                        elif f.rec is None or _key(f.rec) != _key(rec):
                            f.rec = rec
                            f.changed.set()
                if not self._followers:
                    return
                with trio.CancelScope() as self._reader_wait:
                    await retrying(
                        "wait for task changes",
                        self.driver.wait_for_change,
                        FOLLOW_POLL,
                        transient=self.transient,
                    )
                self._reader_wait = None
        finally:
            self._reader_running = False
            self._reader_wait = None

    def _stop_reader(self) -> None:
        closed = BackendClosed("the backend closed while a task was followed")
        for fs in self._followers.values():
            for f in fs:
                f.error = closed
                f.changed.set()
        self._followers.clear()
        if self._reader_wait is not None:
            self._reader_wait.cancel()

    def _follow_start(self, id: str) -> _Follower:
        if self._nursery is None:
            raise BackendClosed(
                f"{type(self).__name__} is not open: use it inside `async with ...open(...)`"
            )
        f = _Follower()
        self._followers.setdefault(id, []).append(f)
        if not self._reader_running:
            self._reader_running = True
            self._nursery.start_soon(self._reader)
        elif self._reader_wait is not None:
            self._reader_wait.cancel()  # read the new one now
        return f

    def _follow_stop(self, id: str, f: _Follower) -> None:
        fs = self._followers.get(id)
        if fs is not None and f in fs:
            fs.remove(f)
            if not fs:
                del self._followers[id]

    async def _follow(self, id: str) -> AsyncGenerator[StoredTask, None]:
        f = self._follow_start(str(id))
        try:
            while True:
                await f.changed.wait()
                f.changed = trio.Event()
                if f.error is not None:
                    raise f.error
                if f.gone:
                    raise LookupError(f"no task {id!r} (never pushed, or deleted)")
                rec = f.rec
                if rec is not None:
                    yield rec
                    if rec.status.is_final:
                        return
        finally:
            self._follow_stop(str(id), f)

    async def wait_result(self, id: str, *, type: Any = None) -> Any:
        """Wait until task ``id`` is final and return its result.

        Event-driven: no polling loop per waiter (see the module's notes). No
        timeout argument: wrap the call in ``trio.fail_after``.

        Args:
          id: The task's id.
          type: Decode the result into this type (a dataclass, a TypedDict...);
            default: plain data.

        Returns:
          The decoded result of a DONE task (None if it returned None).

        Raises:
          TaskFailed: the task ended KILLED (``.task`` holds its record).
          TaskCancelled: the task was cancelled.
          LookupError: no such task (or it was deleted while waited on).
          CodecError: the result does not decode into ``type``.
        """
        last: StoredTask | None = None
        gen = self._follow(id)
        try:
            async for rec in gen:
                last = rec
        finally:
            await gen.aclose()
        assert last is not None
        if last.status is Status.KILLED:
            raise TaskFailed(self._to_task(last))
        if last.status is Status.CANCELLED:
            raise TaskCancelled(self._to_task(last))
        if last.result is None:
            return None
        return self.codec.decoder(Any if type is None else type)(bytes(last.result))

    def watch(self, id: str) -> _Watch:
        """Follow task ``id``: an async iterator of ``Task`` snapshots.

        It yields the task as it is now, then once per change of its status,
        attempts or progress (changes closer together than a read may come
        as one), and ends after the final one (DONE, KILLED, CANCELLED).

        Example::

            async for task in backend.watch(tid):
                print(task.status, task.progress)

        Raises (while iterating):
          LookupError: no such task (or it was deleted while watched).
        """
        return _Watch(self, str(id))


class _Watch:
    """The async iterator ``Backend.watch`` returns; stop early with ``aclose()``."""

    def __init__(self, results: Results, id: str) -> None:
        self._results = results
        self._gen = results._follow(id)

    def __aiter__(self) -> _Watch:
        return self

    async def __anext__(self) -> Task[Any]:
        rec = await self._gen.__anext__()
        return self._results._to_task(rec)

    async def aclose(self) -> None:
        """Stop following the task."""
        await self._gen.aclose()
