"""The SQLite driver's connection: short calls on the Trio thread, the rest on its own thread.

The SQLite driver runs short statements on the Trio thread and hands the rest
(large inserts, waits for another process's write lock, checkpoints) to this
thread. A call costs two thread wake-ups (about 65 µs on the test machine,
half of a ``trio.to_thread.run_sync`` hop, which also looks up a cached thread
and a limiter).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

from .._errors import BackendClosed
from . import _sqlite_schema as schema

__all__ = ["DIRECT_ROWS", "Connection", "ConnectionThread"]

T = TypeVar("T")

#: The SQLite driver's calls touching more rows than this run on the connection
#: thread: the Trio thread is never held for more than about a millisecond.
DIRECT_ROWS = 256


class _Job(Generic[T]):
    __slots__ = ("args", "done", "error", "fn", "value")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = trio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class ConnectionThread:
    """A daemon thread that runs one function at a time for Trio callers.

    Make it inside ``trio.run`` (it keeps the run's token) and ``close()`` it
    when done. Callers serialize their calls (the driver holds its lock around
    each); the thread itself takes calls in order.

    Args:
      name: The thread's name (shown by debuggers and ``threading.enumerate()``).
    """

    def __init__(self, name: str) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def _loop(self) -> None:
        jobs, token = self._jobs, self._token
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                job.value = job.fn(*job.args)
            except BaseException as exc:
                job.error = exc
            try:
                token.run_sync_soon(job.done.set)
            except trio.RunFinishedError:  # the run is gone: nobody waits any more
                return

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread and return its value (or raise its exception).

        Cancellation does not interrupt the call: ``fn`` runs to its end and
        its result is returned, so a call whose effects were committed is
        never reported as cancelled.

        Raises:
          RuntimeError: if the thread was closed.
        """
        if self._closed:
            raise RuntimeError("the connection thread is closed")
        job = _Job(fn, args)
        self._jobs.put(job)
        # Not cancellable while fn runs: its effects must reach the caller.
        with trio.CancelScope(shield=True):
            await job.done.wait()
        if job.error is not None:
            try:
                raise job.error
            finally:
                job = None  # type: ignore[assignment]  # no cycle through the traceback
        return job.value  # type: ignore[return-value]  # set by fn

    async def close(self) -> None:
        """Let the thread finish its calls and exit (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<ConnectionThread {self._thread.name!r} {state}>"


class Connection:
    """One sqlite3 connection driven from Trio, one call at a time.

    A call runs on the Trio thread when it is short: the connection's
    ``busy_timeout`` is 0 there, so a call that finds another connection's
    lock fails at once with ``SQLITE_BUSY``, its transaction rolled back, and
    runs again on the connection thread, where it may wait up to
    ``busy_timeout``. Calls marked ``offload`` (large batches) run on the
    thread from the start. SQLite's automatic WAL checkpoint runs only in
    calls on the thread (it writes and syncs the database file).

    Made by ``Connection.open``; ``aclose()`` it when done.

    Attributes:
      path: The database path, for messages.
      direct_calls: Calls run on the Trio thread.
      thread_calls: Calls run on the connection thread.
      busy_retries: Calls that found a lock taken on the Trio thread and ran again on the thread.
    """

    def __init__(
        self, conn: sqlite3.Connection, thread: ConnectionThread, *, path: str, busy_timeout: float
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._thread = thread
        self.path = path
        self._busy_ms = int(busy_timeout * 1000)
        self._lock = trio.Lock()
        self.direct_calls = 0
        self.thread_calls = 0
        self.busy_retries = 0

    @classmethod
    async def open(
        cls, path: str, *, busy_timeout: float, synchronous: str, migrate: bool
    ) -> tuple[Connection, str | None]:
        """Open and migrate the database at ``path``; return it and the file its commits write.

        Raises:
          BackendError: if the file cannot be opened or its schema is unusable.
        """
        thread = ConnectionThread(f"sqlite {path}")
        try:
            conn, watched = await thread.run(
                schema.open_connection, path, busy_timeout, synchronous, migrate
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await thread.close()
            raise
        return cls(conn, thread, path=path, busy_timeout=busy_timeout), watched

    @property
    def closed(self) -> bool:
        """Whether ``aclose()`` was called."""
        return self._conn is None

    async def call(self, fn: Callable[..., T], *args: Any, offload: bool = False) -> T:
        """Return ``fn(conn, *args)``, run on the Trio thread or on the connection thread.

        Not interrupted by cancellation: a caller that already took its batch
        (outcomes, releases) must learn what became of it. Each call is short,
        or bounded by ``busy_timeout``.

        Args:
          fn: The function, given the sqlite3 connection first.
          offload: Run it on the connection thread (a large batch).

        Raises:
          BackendClosed: if the connection is closed.
          sqlite3.Error: whatever ``fn`` raised.
        """
        if self._conn is None:
            raise BackendClosed(f"the SQLite driver for {self.path!r} is closed")
        with trio.CancelScope(shield=True):
            out = await self._locked(fn, args, offload)
        return out

    async def _locked(self, fn: Callable[..., T], args: tuple[Any, ...], offload: bool) -> T:
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise BackendClosed(f"the SQLite driver for {self.path!r} is closed")
            if not offload:
                try:
                    out = fn(conn, *args)
                except sqlite3.OperationalError as exc:
                    if not schema.is_busy(exc):
                        raise
                    # Another connection holds the lock: wait for it off the Trio
                    # thread. (The failed transaction was rolled back: fn may run again.)
                    self.busy_retries += 1
                else:
                    self.direct_calls += 1
                    return out
            self.thread_calls += 1
            return await self._thread.run(self._waiting, conn, fn, *args)

    def _waiting(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        # On the connection thread: wait for locks, and checkpoint the WAL when
        # SQLite finds it long (both off on the Trio thread).
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {schema.WAL_AUTOCHECKPOINT}")
        try:
            return fn(conn, *args)
        finally:
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute("PRAGMA busy_timeout = 0")

    async def aclose(self) -> None:
        """Close the connection, then its thread (idempotent)."""
        with trio.CancelScope(shield=True):
            async with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await self._thread.run(conn.close)
                await self._thread.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return (
            f"<Connection {self.path!r} {state} direct={self.direct_calls} "
            f"thread={self.thread_calls} busy_retries={self.busy_retries}>"
        )
