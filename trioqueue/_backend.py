"""The bridge between trio memory channels and a storage driver, shared by every backend.

Push side: producers send encoded batches through a bounded channel; one
inserter task drains it, merges what is waiting into one driver ``insert`` and
acknowledges each batch. Consume side (one ``Consumer`` per worker): a claimer
fills a bounded prefetch channel with leased tasks, an extender keeps the
leases alive, a settler writes outcomes in batches, a rescuer recovers expired
leases, and closing releases whatever was prefetched but not started.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sized
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from ._codec import Codec, JsonCodec
from ._driver import Driver, Outcome, StoredTask
from ._errors import BackendClosed, BackendError, PushError, TrioqueueError
from ._sink import TaskSink, check_queue_name
from ._task import Meta, Status, Task, TaskId, from_timestamp

__all__ = ["Backend", "BackendStatistics", "Consumer"]

log = logging.getLogger("trioqueue.backend")

T = TypeVar("T")

#: Seconds of the shielded clean-up (final settle, release) at shutdown.
CLEANUP_TIMEOUT = 10.0


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


class _Batch:
    __slots__ = ("done", "error", "records")

    def __init__(self, records: list[StoredTask]) -> None:
        self.records = records
        self.done = trio.Event()
        self.error: BaseException | None = None


async def retrying(
    what: str,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    attempts: float = math.inf,
    base: float = 0.05,
    cap: float = 5.0,
) -> T:
    """Call ``await fn(*args)``, retrying driver errors with capped exponential backoff.

    Raises:
      BackendError: once ``attempts`` calls failed; the last error is the cause.
    """
    n = 0
    while True:
        try:
            return await fn(*args)
        except (trio.Cancelled, KeyboardInterrupt, TrioqueueError):
            raise
        except Exception as exc:
            n += 1
            if n >= attempts:
                raise BackendError(f"storage failed to {what}: {exc!r}") from exc
            delay = min(cap, base * 2 ** min(n, 30)) * (0.5 + random.random() / 2)
            log.warning("storage failed to %s (%r); retry %d in %.2fs", what, exc, n, delay)
            await trio.sleep(delay)


class Backend(TaskSink[Any]):
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
    ) -> None:
        self.driver = driver
        self.queue = check_queue_name(queue)
        self.codec = codec if codec is not None else JsonCodec()
        self._push_buffer = push_buffer
        self._insert_batch = insert_batch
        self._insert_attempts = insert_attempts
        self._send: trio.MemorySendChannel[_Batch] | None = None
        self._pushed = 0
        self._consumers = 0

    # -- lifecycle --

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[None]:
        send, recv = trio.open_memory_channel[_Batch](self._push_buffer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._inserter, recv)
                self._send = send
                try:
                    yield
                finally:
                    self._send = None
                    send.close()  # the inserter drains what was sent, then ends
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await self.driver.aclose()

    async def _inserter(self, recv: trio.MemoryReceiveChannel[_Batch]) -> None:
        batches: list[_Batch] = []
        try:
            async with recv:
                async for first in recv:
                    batches = [first]
                    n = len(first.records)
                    while n < self._insert_batch:
                        try:
                            b = recv.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                        batches.append(b)
                        n += len(b.records)
                    records = (
                        first.records
                        if len(batches) == 1
                        else [r for b in batches for r in b.records]
                    )
                    error: BaseException | None = None
                    try:
                        await retrying(
                            "insert tasks",
                            self.driver.insert,
                            records,
                            attempts=self._insert_attempts,
                        )
                        self._pushed += n
                    except BackendError as exc:
                        error = exc.__cause__ or exc
                    for b in batches:
                        b.error = error
                        b.done.set()
                    batches = []
        finally:
            # Cancelled (the backend's block was cancelled): whoever still waits
            # on a batch learns it was not acknowledged.
            closed = BackendClosed("the backend closed before storage acknowledged the push")
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

    # -- TaskSink --

    def _now(self) -> float:
        return self.driver.now()

    def _sender(self) -> trio.MemorySendChannel[_Batch]:
        if self._send is None:
            raise BackendClosed(
                f"{type(self).__name__} is not open: use it inside `async with ...open(...)`"
            )
        return self._send

    async def _store(self, batch: list[StoredTask]) -> None:
        b = _Batch(batch)
        await self._sender().send(b)
        await b.done.wait()
        if b.error is not None:
            raise PushError(f"storage did not accept {len(batch)} task(s)") from b.error

    async def _store_window(self, batches: AsyncIterable[list[StoredTask]]) -> None:
        window = max(2, self._push_buffer // 2)
        in_flight: list[_Batch] = []
        send = self._sender()
        async for records in batches:
            b = _Batch(records)
            await send.send(b)
            in_flight.append(b)
            while in_flight and (in_flight[0].done.is_set() or len(in_flight) >= window):
                head = in_flight.pop(0)
                await head.done.wait()
                if head.error is not None:
                    raise PushError("storage did not accept a batch of tasks") from head.error
        for b in in_flight:
            await b.done.wait()
            if b.error is not None:
                raise PushError("storage did not accept a batch of tasks") from b.error

    # -- consuming --

    @asynccontextmanager
    async def open_consumer(
        self,
        *,
        concurrency: int,
        prefetch: int | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        queue: str | None = None,
    ) -> AsyncIterator[Consumer]:
        """Open a claiming loop feeding a bounded prefetch channel (one per worker).

        Args:
          concurrency: How many tasks the consumer's user runs at once.
          prefetch: Capacity of the prefetch channel (default: ``concurrency``).
          lease_seconds: Lease length; leases are extended every third of it.
          poll_interval: Longest wait between claims when the driver has no wake-up.
          queue: Queue to claim from (default: the backend's).

        Resource handling:
          On exit the claimer stops, prefetched tasks are released at once,
          pending outcomes are settled and anything still held is released,
          shielded from cancellation for up to ``CLEANUP_TIMEOUT`` seconds.
        """
        self._sender()
        consumer = Consumer(
            self,
            queue=self.queue if queue is None else check_queue_name(queue),
            concurrency=concurrency,
            prefetch=prefetch if prefetch is not None else concurrency,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
        )
        self._consumers += 1
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(consumer._run)
                try:
                    yield consumer
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._consumers -= 1
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await consumer._close()

    # -- inspection and administration --

    def _to_task(self, rec: StoredTask, *, decode: bool = True) -> Task[Any]:
        args: Any = rec.payload
        result: Any = rec.result
        if decode:
            plain = self.codec.decoder(Any)
            try:
                args = plain(rec.payload)
            except TrioqueueError:
                args = rec.payload
            if rec.result is not None:
                try:
                    result = plain(rec.result)
                except TrioqueueError:
                    result = rec.result
        return Task(
            args=args,
            id=TaskId(rec.id),
            queue=rec.queue,
            attempts=rec.attempts,
            max_attempts=rec.max_attempts,
            run_at=from_timestamp(rec.run_at),
            priority=rec.priority,
            meta=Meta(rec.meta),
            status=rec.status,
            last_error=rec.last_error,
            result=result,
        )

    async def counts(self, *, queue: str | None = None) -> dict[str, dict[Status, int]]:
        """Return task counts per queue and status (all queues when ``queue`` is None).

        Raises:
          BackendError: if storage failed after retries.
        """
        return await retrying("count tasks", self.driver.counts, queue, attempts=3)

    async def list_tasks(
        self,
        *,
        queue: str | None = None,
        status: Status | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Task[Any]]:
        """Return tasks filtered by ``queue`` and ``status``, newest first, paged.

        Raises:
          ValueError: for an unknown status.
          BackendError: if storage failed after retries.
        """
        st = None if status is None else Status(status)

        async def call() -> list[StoredTask]:
            return await self.driver.list_tasks(queue=queue, status=st, limit=limit, offset=offset)

        return [self._to_task(r) for r in await retrying("list tasks", call, attempts=3)]

    async def get_task(self, id: str) -> Task[Any] | None:
        """Return the task with this id (args and result decoded as plain data), or None."""
        rec = await retrying("read a task", self.driver.get, str(id), attempts=3)
        return None if rec is None else self._to_task(rec)

    async def retry_task(self, id: str) -> bool:
        """Make a FAILED or KILLED task PENDING now, with one more attempt allowed.

        Returns:
          Whether the task was in a state that could be retried.
        """
        return await retrying("retry a task", self.driver.retry, str(id), attempts=3)

    async def cancel_task(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task. Returns whether it was cancelled."""
        return await retrying("cancel a task", self.driver.cancel, str(id), attempts=3)

    async def purge(self, *, older_than: float) -> int:
        """Delete DONE, KILLED and CANCELLED tasks finished over ``older_than`` seconds ago.

        Returns:
          How many were deleted.
        """
        if older_than < 0:
            raise ValueError("older_than must be >= 0 seconds")
        cutoff = self.driver.now() - older_than
        return await retrying("purge tasks", self.driver.purge, cutoff, attempts=3)

    async def rescue(self) -> int:
        """Recover tasks of any queue whose lease expired; returns how many."""
        return await retrying("rescue tasks", self.driver.rescue, None, attempts=3)

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


class Consumer:
    """One worker's side of the bridge: a prefetch channel of leased tasks.

    Made by ``Backend.open_consumer``. The worker takes tasks from
    ``receive`` (only when it has a free slot), calls ``start_nowait`` as it
    begins one, and ``settle_nowait`` or ``release_nowait`` when it ends.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        queue: str,
        concurrency: int,
        prefetch: int,
        lease_seconds: float,
        poll_interval: float,
    ) -> None:
        if prefetch < 1 or concurrency < 1:
            raise ValueError("concurrency and prefetch must be >= 1")
        self.backend = backend
        self.driver = backend.driver
        self.queue = queue
        self.token = secrets.token_hex(16)
        self.prefetch = prefetch
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self._max_held = concurrency + prefetch
        self._low_water = prefetch // 2
        self._send, self.receive = trio.open_memory_channel[StoredTask](prefetch)
        # The channel's own deque, read on the hot path instead of building a
        # statistics() record per task; None if trio ever stops exposing it.
        self._buffer: Sized | None = getattr(getattr(self._send, "_state", None), "data", None)
        #: Tasks leased by this consumer and not yet settled or released.
        self.held: set[str] = set()
        #: Leases found lost by the extender: these must not start.
        self.lost: set[str] = set()
        self._claiming = True
        self._claim_wake = trio.Event()
        self._claimer_waiting = False
        self._started: list[str] = []
        self._settling: set[str] = set()
        self._outcomes: list[Outcome] = []
        self._released: list[str] = []
        self._settle_wake = trio.Event()
        self._settler_waiting = False
        self.claimed_total = 0
        #: Called by the claimer when a claim found nothing and nothing is buffered.
        self.on_empty: Callable[[], None] | None = None
        self._recheck = False
        self._wait_scope: trio.CancelScope | None = None

    # -- what the worker calls (all non-blocking) --

    def took_nowait(self) -> None:
        """Tell the claimer a task left the prefetch channel."""
        if self._claimer_waiting and self._send.statistics().current_buffer_used <= self._low_water:
            self._claimer_waiting = False
            self._claim_wake.set()

    def start_nowait(self, id: str) -> None:
        """Record that the task ``id`` began running (flushed in a batch)."""
        self._started.append(id)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def settle_nowait(self, outcome: Outcome) -> None:
        """Queue an outcome for the next settle batch."""
        self._outcomes.append(outcome)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def release_nowait(self, id: str) -> None:
        """Give back a task that will not run (or was cancelled by shutdown)."""
        self._released.append(id)
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def recheck_soon(self) -> None:
        """Ask the claimer to look for ready tasks again once outcomes are settled."""
        self._recheck = True
        if self._settler_waiting:
            self._settler_waiting = False
            self._settle_wake.set()

    def stop_claiming(self) -> list[str]:
        """Stop claiming and release what waits in the prefetch channel.

        Returns:
          The ids released (they are written to storage by the settler at once).
        """
        self._claiming = False
        self._claim_wake.set()
        ids = []
        while True:
            try:
                rec = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            ids.append(rec.id)
            self.release_nowait(rec.id)
        self._send.close()  # slots parked in receive() get EndOfChannel
        return ids

    @property
    def buffered(self) -> int:
        """Tasks waiting in the prefetch channel."""
        if self._buffer is not None:
            return len(self._buffer)
        return self._send.statistics().current_buffer_used

    # -- background loops --

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Rescue once before the first claim, so even a burst run picks up
        # the tasks of a worker that died.
        await retrying("rescue expired leases", self.driver.rescue, self.queue)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._settler)
            nursery.start_soon(self._extender)
            nursery.start_soon(self._rescuer)
            nursery.start_soon(self._claimer)
            task_status.started()

    async def _claimer(self) -> None:
        send, driver = self._send, self.driver
        while True:
            if not self._claiming:
                return
            stats = send.statistics()
            used = stats.current_buffer_used
            # Tasks handed straight to slots parked in receive() never sit in
            # the buffer: count those slots as room too. What is held stays
            # bounded by concurrency + prefetch either way.
            room = self.prefetch - used + stats.tasks_waiting_receive
            free = min(room, self._max_held - len(self.held))
            if free <= 0 or (used > self._low_water and room < self.prefetch):
                self._claim_wake = trio.Event()
                self._claimer_waiting = True
                await self._claim_wake.wait()
                continue
            recs = await retrying(
                "claim tasks", driver.claim, self.queue, free, self.token, self.lease_seconds
            )
            if not self._claiming:
                for r in recs:
                    self.held.add(r.id)
                    self.release_nowait(r.id)
                return
            if recs:
                self.claimed_total += len(recs)
                held_add, send_nowait = self.held.add, send.send_nowait
                for r in recs:
                    held_add(r.id)
                    send_nowait(r)
                if self.lost:  # reclaimed after a lease was lost: it may run again
                    self.lost.difference_update(r.id for r in recs)
                await trio.lowlevel.checkpoint()
                continue
            if not self.held and self.on_empty is not None and not self._pending():
                self.on_empty()
                if not self._claiming:
                    return
            nxt = await retrying("read the schedule", driver.next_run_at, self.queue)
            timeout = self.poll_interval
            if nxt is not None:
                timeout = max(0.0, min(timeout, nxt - driver.now()))
            if timeout > 0:
                with trio.CancelScope() as self._wait_scope:
                    await retrying("wait for tasks", driver.wait_for_tasks, self.queue, timeout)
                self._wait_scope = None

    def _pending(self) -> bool:
        return bool(self._started or self._outcomes or self._released)

    async def _settler(self) -> None:
        while True:
            if not (self._pending() or self._recheck):
                self._settle_wake = trio.Event()
                self._settler_waiting = True
                await self._settle_wake.wait()
            await self._flush()
            if self._recheck and not self._pending():
                self._recheck = False
                if self._wait_scope is not None:
                    self._wait_scope.cancel()
            await trio.lowlevel.checkpoint()

    async def _flush(self) -> None:
        # Each batch leaves its list before the driver is awaited; if the call
        # fails for good (or is cancelled) the batch goes back, so nothing the
        # worker reported is forgotten. Ids in flight are "settling": the
        # extender must not take them for lost leases.
        driver, token = self.driver, self.token
        if self._started:
            started, self._started = self._started, []
            try:
                await retrying("mark tasks running", driver.start, started, token)
            except BaseException:
                self._started[:0] = started
                raise
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            ids = [o.id for o in outcomes]
            self._settling.update(ids)
            try:
                applied = await retrying("settle tasks", driver.settle, outcomes, token)
            except BaseException:
                self._outcomes[:0] = outcomes
                raise
            finally:
                self._settling.difference_update(ids)
            if len(applied) != len(outcomes):
                lost = set(ids) - set(applied)
                log.warning("lease lost before settling %d task(s): %s", len(lost), sorted(lost))
            self.held.difference_update(ids)
            if self._claimer_waiting:
                self._claimer_waiting = False
                self._claim_wake.set()
        if self._released:
            released, self._released = self._released, []
            self._settling.update(released)
            try:
                await retrying("release tasks", driver.release, released, token)
            except BaseException:
                self._released[:0] = released
                raise
            finally:
                self._settling.difference_update(released)
            self.held.difference_update(released)

    async def _extender(self) -> None:
        every = self.lease_seconds / 3
        while True:
            await trio.sleep(every)
            ids = sorted(self.held - self._settling)
            if not ids:
                continue
            kept = await retrying(
                "extend leases", self.driver.extend, ids, self.token, self.lease_seconds
            )
            if len(kept) != len(ids):
                lost = set(ids) - set(kept) - self._settling
                if lost:
                    log.warning("lease lost for %d task(s): %s", len(lost), sorted(lost))
                    self.lost.update(lost)
                    self.held.difference_update(lost)

    async def _rescuer(self) -> None:
        every = max(self.lease_seconds / 2, 0.01)
        while True:
            n = await retrying("rescue expired leases", self.driver.rescue, self.queue)
            if n:
                log.info("rescued %d task(s) whose lease expired", n)
            await trio.sleep(every)

    async def _close(self) -> None:
        self.stop_claiming()
        # Anything still held was neither settled nor released: give it back.
        await self._flush()
        rest = sorted(self.held)
        if rest:
            await retrying("release tasks", self.driver.release, rest, self.token, attempts=5)
            self.held.clear()

    def __repr__(self) -> str:
        return (
            f"<Consumer queue={self.queue!r} held={len(self.held)} "
            f"buffered={self.buffered}/{self.prefetch} claimed={self.claimed_total}>"
        )
