"""One LISTEN connection per PostgreSQL driver, shared by its waits; channels join it on first use.

``Channels`` is the list of channels a runner's ``listen`` loop listens on:
it only grows, and growing interrupts the loop's wait so that it LISTENs on
the new channel too (on the same connection where the runner can).
``Listener`` starts that loop in the backend's nursery the first time any
wait needs it, and tells a wait when its channels are listened to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import trio

__all__ = ["Channels", "Listen", "Listener", "OnNotify", "OnReady"]

#: Called with ``(channel, payload)`` for each notification.
OnNotify = Callable[[str, str], None]
#: Called with how many of the channels are listened to: after each
#: (re)connection and channel added, and with 0 after each loss.
OnReady = Callable[[int], None]


class Channels:
    """The channels a LISTEN connection listens on, in the order they were added.

    A runner's ``listen`` loop LISTENs on ``names`` and waits for
    notifications inside ``until_grown``, whose cancel scope ``add`` cancels:
    the loop then LISTENs on the channels added meanwhile.
    """

    def __init__(self, names: Sequence[str] = ()) -> None:
        #: The channel names; only ever appended to.
        self.names: list[str] = list(names)
        self._scopes: set[trio.CancelScope] = set()

    def add(self, name: str) -> bool:
        """Add channel ``name`` (and interrupt the waits); return False if it was there."""
        if name in self.names:
            return False
        self.names.append(name)
        for scope in self._scopes:
            scope.cancel()
        return True

    @contextmanager
    def until_grown(self, known: int) -> Iterator[trio.CancelScope]:
        """Run the block in a cancel scope cancelled once there are more than ``known`` names."""
        with trio.CancelScope() as scope:
            if len(self.names) > known:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def __repr__(self) -> str:
        return f"<Channels {self.names!r}>"


#: A runner's ``listen`` loop.
Listen = Callable[["Channels", OnNotify, OnReady], Awaitable[None]]


class Listener:
    """Starts a driver's LISTEN loop on first use and adds channels to it as waits need them.

    Args:
      listen: The LISTEN loop (a runner's ``listen``).
      on_notify: Called with ``(channel, payload)`` for each notification.
      on_ready: Called after each (re)connection, channel added and loss:
        notifications may have been missed, so every waiter should look again.
      enabled: False never listens (``ensure`` returns at once: waits poll).

    Resource handling:
      The loop runs in the nursery given to ``attach`` (without one, nothing
      listens) until that nursery is cancelled; one connection at a time.
    """

    def __init__(
        self,
        listen: Listen,
        on_notify: OnNotify,
        on_ready: Callable[[], None],
        *,
        enabled: bool = True,
    ) -> None:
        self._listen = listen
        self._on_notify = on_notify
        self._on_ready = on_ready
        self.enabled = enabled
        self._channels = Channels()
        self._nursery: trio.Nursery | None = None
        self._started = False
        #: How many of the channels were ever listened to (they are, once connected).
        self._listened = 0
        self._failures = 0
        self._ready = trio.Event()

    def attach(self, nursery: trio.Nursery) -> None:
        """Give the listener the nursery its loop will run in."""
        self._nursery = nursery

    def listens(self, channel: str) -> bool:
        """Whether LISTEN on ``channel`` took effect (it stays, reconnecting after a loss)."""
        names = self._channels.names
        return channel in names and names.index(channel) < self._listened

    async def ensure(self, *channels: str) -> bool:
        """Listen on ``channels`` (starting the loop on first use) and return once it does.

        Also returns after a failed attempt to connect: the caller then polls
        (its own deadline) while the loop reconnects.

        Returns:
          True if a channel was not listened to before this call: a
          notification sent before it returned was missed, so the caller
          should look at what it waits for again. False when every channel
          was listened to already, or listening is off.
        """
        if not self.enabled or self._nursery is None:
            return False
        if all(self.listens(c) for c in channels):
            return False
        for c in channels:
            self._channels.add(c)
        last = max(self._channels.names.index(c) for c in channels)
        if not self._started:
            self._started = True
            self._nursery.start_soon(self._run)
        failures = self._failures
        while self._listened <= last and self._failures == failures:
            await self._ready.wait()
        return True

    def _ready_on(self, count: int) -> None:
        if count:
            self._listened = max(self._listened, count)
        else:
            self._failures += 1
        ready, self._ready = self._ready, trio.Event()
        ready.set()
        self._on_ready()

    async def _run(self) -> None:
        await self._listen(self._channels, self._on_notify, self._ready_on)

    def __repr__(self) -> str:
        state = "off" if not self.enabled else "running" if self._started else "idle"
        return f"<Listener {state} channels={self._channels.names!r} listened={self._listened}>"
