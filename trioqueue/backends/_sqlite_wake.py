"""``Waker`` and ``FileWatch``: an idle SQLite driver wakes on writes by any process.

The SQLite driver watches its WAL file (or, out of WAL mode, the database
file): another process's commit writes to it, so an idle worker sleeps until
the kernel reports a write instead of polling. inotify is called through
``ctypes`` on the C library; where it is missing (not Linux, a sandbox, the
per-user limit of inotify instances reached) ``FileWatch.open`` returns None
and the driver polls as before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import trio

__all__ = ["SIGNAL_SETTLE", "FileWatch", "Waker"]

log = logging.getLogger("trioqueue.backends.sqlite")

_IN_MODIFY = 0x00000002
_IN_IGNORED = 0x00008000  # the watch is gone (file deleted, unmounted)
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_Calls = tuple[Callable[..., int], Callable[..., int]]
_calls: _Calls | None = None


def _libc() -> _Calls | None:
    """Return libc's ``inotify_init1`` and ``inotify_add_watch``, or None off Linux."""
    global _calls
    if _calls is None and sys.platform.startswith("linux"):
        try:
            libc: Any = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
        add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        add.restype = ctypes.c_int
        _calls = (init, add)
    return _calls


class FileWatch:
    """Counts writes to one file reported by inotify; waiters wait for the count to move.

    Make one with ``FileWatch.open(path)``; ``close()`` it when done. Any number
    of Trio tasks may wait at once: one reads the inotify descriptor, the
    others wait for it. ``poke()`` wakes them all as if the file was written.

    Attributes:
      generation: How many times writes were reported (or ``poke()`` called).
      last_event: ``trio.current_time()`` of the latest report (-inf before any).
      alive: False once the kernel dropped the watch (the file was deleted):
        writes are no longer reported, the caller must poll instead.
    """

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self.path = path
        self.generation = 0
        self.last_event = float("-inf")
        self.alive = True
        self._reading = False
        self._changed = trio.Event()

    @classmethod
    def open(cls, path: str) -> FileWatch | None:
        """Watch ``path`` for writes; None if inotify is unavailable or the file is missing."""
        calls = _libc()
        if calls is None:
            return None
        init, add = calls
        fd = init(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            reason = os.strerror(ctypes.get_errno())
            log.info("inotify unavailable (%s): polling for commits", reason)
            return None
        if add(fd, os.fsencode(path), _IN_MODIFY) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            if err != errno.ENOENT:
                log.info("cannot watch %s (%s): polling for commits", path, os.strerror(err))
            return None
        return cls(fd, path)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 4096)
            except BlockingIOError:
                return
            except OSError:  # closed under us
                self.alive = False
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & _IN_IGNORED:
                    self.alive = False
                if mask & _IN_Q_OVERFLOW:
                    pass  # writes were coalesced: the generation moves all the same

    def _wake_all(self) -> None:
        ev, self._changed = self._changed, trio.Event()
        ev.set()

    def _report(self) -> None:
        self.generation += 1
        self.last_event = trio.current_time()
        self._wake_all()

    def poke(self) -> None:
        """Wake every waiter now, as if the file was written."""
        self._report()

    async def wait_changed(self, generation: int) -> None:
        """Return once ``self.generation != generation`` (at once if it moved already).

        Also returns once the watch is no longer ``alive``.
        """
        while self.generation == generation and self.alive:
            if self._reading:
                await self._changed.wait()
                continue
            self._reading = True
            try:
                await trio.lowlevel.wait_readable(self._fd)
            except BaseException as exc:
                # Cancelled or closed: another waiter (if any) takes over the reading.
                self._wake_all()
                if isinstance(exc, trio.ClosedResourceError):
                    self.alive = False
                    return
                raise
            finally:
                self._reading = False
            self._drain()
            self._report()

    def close(self) -> None:
        """Stop watching (idempotent); a task still waiting returns."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            trio.lowlevel.notify_closing(fd)
            os.close(fd)
            self.alive = False
            self._wake_all()

    def __repr__(self) -> str:
        state = "watching" if self.alive else "closed"
        return f"<FileWatch {self.path!r} {state} generation={self.generation}>"


#: Seconds after the latest reported write during which ``wait_signal`` goes
#: on reading (every ``every`` seconds) before it sleeps until the next write.
#: A commit shows only once its writer has updated the WAL index, after its
#: last write to the WAL file: on a loaded machine the writer can be paused
#: between the two for much longer than ``poll_max``, and a read in that gap
#: sees the old count while the write's wake-up has already been spent.
SIGNAL_SETTLE = 2.0


class Waker:
    """Where a driver's waiters wait: its own writes, and other connections' commits.

    Idle claimers wait per queue (``wait``, woken by ``wake``); followers of
    tasks wait for any change (``wait_change``, woken by ``changed``).

    Args:
      watch: Reports writes to the database's files (None: poll only).
      poll_min, poll_max: The first and the longest pause between reads of
        the data version while polling.

    Attributes:
      changes: How many changes this driver made (``changed()`` calls).
    """

    def __init__(self, watch: FileWatch | None, *, poll_min: float, poll_max: float) -> None:
        self.watch = watch
        self.poll_min = poll_min
        self.poll_max = poll_max
        self._events: dict[str, trio.Event] = {}
        self.changes = 0
        self._change = trio.Event()
        self._change_waiters = 0

    def wake(self, queues: Iterable[str]) -> None:
        """Wake the waiters of these queues (tasks may be ready there now)."""
        woke = False
        for q in set(queues):
            ev = self._events.get(q)
            if ev is not None and not ev.is_set():
                ev.set()
                woke = True
        if woke and self.watch is not None:
            self.watch.poke()

    def changed(self) -> None:
        """Count a change of a task's status or progress made by this driver; wake its followers."""
        self.changes += 1
        if self._change_waiters:  # no waiter, no poke: idle claimers stay asleep
            ev, self._change = self._change, trio.Event()
            ev.set()
            if self.watch is not None:
                self.watch.poke()

    async def wait(
        self, queue: str, seen: int, version: Callable[[], Awaitable[int]], max_wait: float
    ) -> None:
        """Return on ``wake(queue)``, when ``await version() != seen``, or after ``max_wait``.

        With a live watch, ``version`` is read after each reported write: every
        ``poll_min`` seconds at first, doubling up to ``poll_max``, until it
        changed or ``poll_max`` passed since the last write (a commit shows a
        moment after its last write); then the waiter sleeps until the next
        write. Without one, it is read on that schedule all along.
        """
        ev = self._events.get(queue)
        if ev is None:
            ev = self._events[queue] = trio.Event()
        await self._wait(ev, seen, version, max_wait)
        if ev.is_set() and self._events.get(queue) is ev:
            self._events[queue] = trio.Event()

    async def wait_change(
        self, seen: int, changes: int, version: Callable[[], Awaitable[int]], max_wait: float
    ) -> None:
        """Return once a task may have changed since ``seen`` and ``changes`` were read.

        That is: at once if this driver made a change since (``self.changes !=
        changes``), on its next ``changed()``, when another connection's commit
        shows (``await version() != seen``, read as ``wait`` reads it), or
        after ``max_wait`` seconds.
        """
        if self.changes != changes:
            await trio.lowlevel.checkpoint()
            return
        self._change_waiters += 1
        try:
            await self._wait(self._change, seen, version, max_wait)
        finally:
            self._change_waiters -= 1

    async def wait_signal(
        self,
        ev: trio.Event,
        seen: int,
        version: Callable[[], Awaitable[int]],
        max_wait: float,
        *,
        every: float,
    ) -> int:
        """Wait until a count in storage moves (``version``), ``ev`` is set, or ``max_wait``.

        Unlike ``wait``, it reads ``version`` at most once every ``every``
        seconds, however busy the file: a waiter that stays for the life of a
        worker costs a few reads a second at most. With a live watch it reads
        only while writes were reported lately and otherwise sleeps until the
        next one; without one it reads every ``every`` seconds. ``ev`` (this
        process's own signal) wakes it at once when it is set with a ``poke``.

        Returns:
          The last value read (``seen`` if none differed); read again when
          ``ev`` ended the wait, so this process's own signal is not seen twice.
        """
        watch, latest = self.watch, seen
        with trio.move_on_after(max_wait):
            while not ev.is_set():
                generation = watch.generation if watch is not None else 0
                read_at = trio.current_time()
                latest = await version()
                if latest != seen:
                    break
                with trio.move_on_after(every):
                    await ev.wait()
                if (
                    not ev.is_set()
                    and watch is not None
                    and watch.alive
                    and watch.last_event < read_at - max(self.poll_max, SIGNAL_SETTLE)
                ):
                    # The read saw every commit and nothing was written since
                    # (a commit shows a moment after its last write): asleep
                    # until the next write, or ``poke``.
                    await watch.wait_changed(generation)
        if ev.is_set() and latest == seen:
            latest = await version()  # this process's signal moved the count too
        return latest

    def poke(self) -> None:
        """Wake every waiter sleeping on the file watch, as a write would."""
        if self.watch is not None:
            self.watch.poke()

    async def _wait(
        self, ev: trio.Event, seen: int, version: Callable[[], Awaitable[int]], max_wait: float
    ) -> None:
        watch, pause = self.watch, self.poll_min
        with trio.move_on_after(max_wait):
            while not ev.is_set():
                generation = watch.generation if watch is not None else 0
                if await version() != seen:
                    break
                if watch is not None and watch.alive:
                    if trio.current_time() - watch.last_event >= self.poll_max:
                        await watch.wait_changed(generation)  # asleep until a write
                        pause = self.poll_min
                        continue
                    with trio.move_on_after(pause):
                        await watch.wait_changed(generation)
                    if watch.generation != generation:
                        pause = self.poll_min
                        continue
                else:
                    with trio.move_on_after(pause):
                        await ev.wait()
                pause = min(pause * 2, self.poll_max)

    def close(self) -> None:
        """Stop watching the file."""
        if self.watch is not None:
            self.watch.close()
