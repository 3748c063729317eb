"""``Backend``: a storage driver behind trio memory channels, shared by every backend.

Push side: producers send encoded batches through a bounded channel; one
inserter task drains it, merges what is waiting into one driver ``insert`` and
acknowledges each batch. Consume side: ``open_consumer`` gives each worker a
``Consumer`` (see ``_consumer.py``). Inspection and administration calls go to
the driver with storage errors retried.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ._admin import Administration
from ._codec import Codec, JsonCodec
from ._consumer import Consumer
from ._driver import Driver, StoredTask
from ._errors import BackendClosed, BackendError, DuplicateTask, PushError
from ._lifecycle import Retention
from ._nursery import open_nursery
from ._results import Results
from ._retrying import CLEANUP_TIMEOUT, retrying
from ._sink import IfExists, TaskSink, check_queue_name

__all__ = ["Backend", "BackendStatistics"]


@dataclass(frozen=True, slots=True)
class BackendStatistics:
    """A snapshot of a backend's bridge.

    Attributes:
      queue: The queue this backend pushes to and claims from.
      push_buffer_used: Batches waiting in the push channel.
      push_buffer_size: Capacity of the push channel, in batches.
      push_waiting: Producers blocked because the push channel is full.
      tasks_pushed: Tasks acknowledged by storage since open.
      consumers: Consumers (workers) open on this backend.
    """

    queue: str
    push_buffer_used: int
    push_buffer_size: int
    push_waiting: int
    tasks_pushed: int
    consumers: int


#: Records whose id a task of another queue holds, by (id, queue).
_Clashes = dict[tuple[str, str], DuplicateTask]


def _clash(records: list[StoredTask], clashes: _Clashes) -> DuplicateTask | None:
    """Return the error of the first of ``records`` that clashed, or None."""
    if clashes:
        for r in records:
            if (dup := clashes.get((r.id, r.queue))) is not None:
                return dup
    return None


class _Batch:
    __slots__ = ("alone", "done", "error", "records", "stored")

    def __init__(self, records: list[StoredTask], alone: bool = False) -> None:
        self.records = records
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.alone = alone  # inserted by itself, so that ``stored`` is its own count
        self.stored = 0


class Backend(TaskSink[Any], Administration, Results):
    """A storage driver behind trio memory channels: a ``TaskSink`` workers consume.

    Use one of the concrete backends (``MemoryBackend``, ``SqliteBackend``,
    ``PostgresBackend``) or ``open_backend(url)``; all of them are this class
    around a different ``Driver``.

    Resource handling:
      A backend works only inside its ``async with ... open(...)`` block, which
      runs the inserter task. Leaving the block stops accepting pushes, waits
      for batches already sent, and closes the driver.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        queue: str = "default",
        codec: Codec | None = None,
        push_buffer: int = 64,
        insert_batch: int = 1024,
        insert_attempts: int = 5,
        transient: tuple[type[BaseException], ...] = (),
        retention: Retention | None = Retention(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        if retention is not None and not isinstance(retention, Retention):
            raise TypeError(
                f"retention must be a Retention or None, got {type(retention).__name__}"
            )
        self.driver = driver
        #: The retention of the queues with no stored rule (``set_retention``);
        #: None keeps their finished tasks forever.
        self.retention_default = retention
        #: The driver exceptions retried with backoff (``BackendSpec.transient``).
        self.transient = tuple(transient)
        self.queue = check_queue_name(queue)
        self.codec = codec if codec is not None else JsonCodec()
        self._push_buffer = push_buffer
        self._insert_batch = insert_batch
        self._insert_attempts = insert_attempts
        self._send: trio.MemorySendChannel[_Batch] | None = None
        self._pushed = 0
        self._consumers = 0
        # Inserts under way: the inserter's and lone pushes' (run in their own task).
        self._inserting = 0
        self._lone = 0  # of which lone pushes
        self._lone_done = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._init_results()

    # -- lifecycle --

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the bridge (the inserter task) for the duration of the block.

        A backend class's ``open()`` wraps its driver in a ``Backend`` and
        yields it inside this block; pushes and consumers work only here.

        Resource handling:
          On exit the push channel closes, batches already sent are inserted
          (producers still waiting get ``BackendClosed`` if the block is
          cancelled), then the driver is closed, shielded, within
          ``CLEANUP_TIMEOUT`` seconds.
        """
        send, recv = trio.open_memory_channel[_Batch](self._push_buffer)
        try:
            async with open_nursery() as nursery:
                nursery.start_soon(self._inserter, recv)
                self._send = send
                self._nursery = nursery
                try:
                    yield
                finally:
                    self._send = None
                    self._nursery = None
                    send.close()  # the inserter drains what was sent, then ends
                    self._stop_reader()  # waiters still following tasks get BackendClosed
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                while self._lone:  # a lone push still inserting in its own task
                    await self._lone_done.wait()
                await self.driver.aclose()

    async def _inserter(self, recv: trio.MemoryReceiveChannel[_Batch]) -> None:
        batches: list[_Batch] = []
        carry: _Batch | None = None  # a batch to insert alone, taken while merging
        try:
            async with recv:
                while True:
                    if carry is not None:
                        first, carry = carry, None
                    else:
                        try:
                            first = await recv.receive()
                        except trio.EndOfChannel:
                            break
                    batches = [first]
                    n = len(first.records)
                    while n < self._insert_batch and not first.alone:
                        try:
                            b = recv.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        if b.alone:
                            carry = b
                            break
                        batches.append(b)
                        n += len(b.records)
                    records = (
                        first.records
                        if len(batches) == 1
                        else [r for b in batches for r in b.records]
                    )
                    self._inserting += 1
                    try:
                        error, clashes, stored = await self._insert(records, self._insert_attempts)
                        if error is not None and len(batches) > 1:
                            # One producer's bad batch must not fail the others
                            # merged with it: try each alone, once.
                            for b in batches:
                                error, clashes, b.stored = await self._insert(b.records, 1)
                                b.error = error or _clash(b.records, clashes)
                        else:
                            first.stored = stored  # exact for a batch inserted alone
                            for b in batches:  # a clash fails only its producer
                                b.error = error or _clash(b.records, clashes)
                    finally:
                        self._inserting -= 1
                    for b in batches:
                        if b.error is None:
                            self._pushed += len(b.records)
                        b.done.set()
                    batches = []
        finally:
            # Cancelled (the backend's block was cancelled): whoever still waits
            # on a batch learns it was not acknowledged.
            closed = BackendClosed("the backend closed before storage acknowledged the push")
            if carry is not None:
                batches.append(carry)
            for b in batches:
                if not b.done.is_set():
                    b.error = closed
                    b.done.set()
            while True:
                try:
                    b = recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                b.error = closed
                b.done.set()

    async def _insert(
        self, records: list[StoredTask], attempts: int, replace: bool = False
    ) -> tuple[BaseException | None, _Clashes, int]:
        """Insert with retries; return the error (the driver's own if any), the clashes, the count.

        ``replace``: replace stored final tasks of the same ids (``driver.replace``).

        Only when fewer tasks were stored than given, one batched read tells
        ids their own queue holds already (skipped: no error) from ids held by
        a task of another queue (a ``DuplicateTask`` for that record).
        """
        transient = self.transient
        insert = self.driver.replace if replace else self.driver.insert
        try:
            n = await retrying(
                "insert tasks", insert, records, transient=transient, attempts=attempts
            )
            if n >= len(records):
                return None, {}, n
            ids = [r.id for r in records]
            held = await retrying(
                "look up task ids", self.driver.queues_of, ids, transient=transient, attempts=3
            )
        except Exception as exc:  # a push fails; the backend goes on
            return ((exc.__cause__ or exc) if isinstance(exc, BackendError) else exc), {}, 0
        clashes: _Clashes = {}
        for r in records:
            queue, status = held.get(r.id, (r.queue, None))
            if queue != r.queue and status is not None and not (replace and status.is_final):
                clashes[r.id, r.queue] = DuplicateTask(r.id, status, queue)
        return None, clashes, n

    # -- TaskSink --

    def _now(self) -> float:
        return self.driver.now()

    def _sender(self) -> trio.MemorySendChannel[_Batch]:
        if self._send is None:
            raise BackendClosed(
                f"{type(self).__name__} is not open: use it inside `async with ...open(...)`"
            )
        return self._send

    async def _store(self, batch: list[StoredTask], if_exists: IfExists = "skip") -> None:
        send = self._sender()
        if if_exists != "skip" or not self._inserting:
            # Group commit without a wait: a push that finds no insert under
            # way inserts at once, in its own task (no hop to the inserter);
            # pushes that arrive meanwhile queue up and go as one insert. A
            # push that must know what became of its id goes alone too.
            self._inserting += 1
            self._lone += 1
            try:
                error, clashes, n = await self._insert(
                    batch, self._insert_attempts, replace=if_exists == "replace_finished"
                )
            finally:
                self._inserting -= 1
                self._lone -= 1
                if not self._lone:
                    self._lone_done.set()
                    self._lone_done = trio.Event()
            if error is not None:
                raise PushError(f"storage did not accept {len(batch)} task(s)") from error
            if (dup := _clash(batch, clashes)) is not None:
                raise dup
            self._pushed += n
            if if_exists == "raise" and n < len(batch):
                await self._raise_taken(batch)
            return
        b = _Batch(batch)
        await send.send(b)
        await b.done.wait()
        self._check(b)

    async def _raise_taken(self, batch: list[StoredTask]) -> None:
        held = await retrying(
            "look up task ids",
            self.driver.queues_of,
            [r.id for r in batch],
            transient=self.transient,
            attempts=3,
        )
        for r in batch:
            if r.id in held:
                queue, status = held[r.id]
                raise DuplicateTask(r.id, status, queue, other_queue=queue != r.queue)

    @staticmethod
    def _check(b: _Batch, what: str = "") -> None:
        if isinstance(b.error, DuplicateTask):
            raise b.error
        if b.error is not None:
            what = what or f"{len(b.records)} task(s)"
            raise PushError(f"storage did not accept {what}") from b.error

    async def _store_window(
        self, batches: AsyncIterable[list[StoredTask]], *, count: bool = False
    ) -> int:
        window = max(2, self._push_buffer // 2)
        in_flight: list[_Batch] = []
        send = self._sender()
        stored = 0
        async for records in batches:
            b = _Batch(records, alone=count)
            await send.send(b)
            in_flight.append(b)
            while in_flight and (in_flight[0].done.is_set() or len(in_flight) >= window):
                head = in_flight.pop(0)
                await head.done.wait()
                self._check(head, "a batch of tasks")
                stored += head.stored if count else len(head.records)
        for b in in_flight:
            await b.done.wait()
            self._check(b, "a batch of tasks")
            stored += b.stored if count else len(b.records)
        return stored

    # -- consuming --

    @asynccontextmanager
    async def open_consumer(
        self,
        *,
        concurrency: int,
        prefetch: int | None = None,
        prefetch_max: int | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        queue: str | None = None,
        give_up_after: float = math.inf,
        worker: str = "",
    ) -> AsyncIterator[Consumer]:
        """Open a claiming loop feeding a bounded prefetch channel (one per worker).

        Args:
          concurrency: How many tasks the consumer's user runs at once.
          prefetch: Capacity of the prefetch channel (default: ``concurrency``).
          prefetch_max: Let the capacity grow up to this while slots starve
            and a backlog is ready (default: ``prefetch``, fixed).
          lease_seconds: Lease length; leases are extended every third of it.
          poll_interval: Longest wait between claims when the driver has no wake-up.
          queue: Queue to claim from (default: the backend's).
          give_up_after: Seconds a storage call may keep failing with
            transient errors before the consumer stops with ``BackendError``
            (default: retried for as long as it takes).
          worker: The name stored as the worker of the tasks it claims and in
            the workers' registry (default: one made from the consumer's token).

        Resource handling:
          On exit the claimer stops, prefetched tasks are released at once,
          pending outcomes are settled and anything still held is released,
          shielded from cancellation for up to ``CLEANUP_TIMEOUT`` seconds.
        """
        self._sender()
        consumer = Consumer(
            self.driver,
            transient=self.transient,
            queue=self.queue if queue is None else check_queue_name(queue),
            concurrency=concurrency,
            prefetch=prefetch if prefetch is not None else concurrency,
            prefetch_max=prefetch_max,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            give_up_after=give_up_after,
            worker=worker,
            retention=self.retention_default,
        )
        self._consumers += 1
        try:
            async with open_nursery() as nursery:
                await nursery.start(consumer.run)
                try:
                    yield consumer
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._consumers -= 1
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await consumer.close()

    def statistics(self) -> BackendStatistics:
        """Return a ``BackendStatistics`` snapshot."""
        stats = None if self._send is None else self._send.statistics()
        return BackendStatistics(
            queue=self.queue,
            push_buffer_used=0 if stats is None else stats.current_buffer_used,
            push_buffer_size=self._push_buffer,
            push_waiting=0 if stats is None else stats.tasks_waiting_send,
            tasks_pushed=self._pushed,
            consumers=self._consumers,
        )

    def __repr__(self) -> str:
        state = "open" if self._send is not None else "closed"
        return (
            f"<{type(self).__name__} queue={self.queue!r} {state} "
            f"pushed={self._pushed} consumers={self._consumers}>"
        )
