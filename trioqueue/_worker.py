"""Workers: run a service over the tasks a backend feeds, with bounded concurrency.

``WorkerBuilder`` (in ``_builder.py``) fills in a ``WorkerConfig`` and builds one.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from ._accounting import Accounting
from ._backend import Backend
from ._backoff import Backoff
from ._boundary import enter as enter_boundary
from ._boundary import own_deadline
from ._consumer import Consumer
from ._context import EventCallback, EventKind, WorkerContext, WorkerEvent, WorkerStatistics
from ._driver import StoredTask, to_task
from ._handler import ServiceBuilder, resolve
from ._nursery import open_nursery
from ._outcome import (
    CANCELLED_VERDICT,
    DONE_VERDICT,
    Verdict,
    decide,
)
from ._schedule._scheduler import Scheduler
from ._service import Layer, Service
from ._sink import CODEC_KEY
from ._task import Status, Task

__all__ = ["Worker", "WorkerConfig"]

log = logging.getLogger("trioqueue.worker")

_HOST = socket.gethostname()
_live_names: set[str] = set()  # the registry names of this process's running workers


def _unique_name(name: str) -> str:
    base = name if "@" in name else f"{name}@{_HOST}:{os.getpid()}"
    unique, n = base, 1
    while unique in _live_names:
        n += 1
        unique = f"{base}#{n}"
    _live_names.add(unique)
    return unique


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a ``Worker`` is built from; ``WorkerBuilder`` fills it in.

    Attributes:
      name: The worker's name.
      backend: The backend whose queue it consumes.
      data: Shared state by type, for ``Data[T]`` parameters.
      layers: The middleware, outermost first.
      concurrency: Tasks run at once.
      prefetch: The prefetch channel's capacity to start with.
      prefetch_max: How far the capacity may grow while slots starve and a
        backlog is ready (adaptive prefetch); equal to ``prefetch`` when fixed.
      lease_seconds: Lease length; renewed every third of it.
      poll_interval: Longest wait between claims without a wake-up.
      storage_patience: Seconds a storage call may keep failing before the
        worker stops with ``BackendError`` (``math.inf``: retried forever).
      shutdown_timeout: How long a graceful stop waits for running tasks.
      backoff: The delay policy after a failed attempt.
      timeout: Each attempt's deadline in seconds, or None.
      callbacks: Event callbacks.
      scheduler: Pushes the tasks of the worker's schedules (``cron``, ``every``).
    """

    name: str
    backend: Backend
    data: Mapping[type, object]
    layers: tuple[Layer, ...]
    concurrency: int
    prefetch: int
    prefetch_max: int
    lease_seconds: float
    poll_interval: float
    storage_patience: float
    shutdown_timeout: float
    backoff: Backoff
    timeout: float | None
    callbacks: tuple[EventCallback, ...]
    scheduler: Scheduler | None = None


class Worker(Accounting):
    """Runs a service over a backend's tasks; made by ``WorkerBuilder.build``.

    Each of its ``concurrency`` slots takes a task from the prefetch channel
    only when free, and runs it under its own cancel scope, in the worker's
    nursery.

    Error handling:
      An exception from the service fails the attempt (retried after the
      backoff; killed after ``max_attempts``); ``Abort`` kills the task;
      ``RetryAfter`` retries at the given time; a payload that does not
      decode into the handler's type kills that task. None stops the worker;
      storage errors are retried with backoff.

    Resource handling:
      ``stop()`` (or SIGINT/SIGTERM under a ``Monitor``) stops claiming,
      releases the prefetched tasks at once and lets running ones finish for
      up to the shutdown timeout; then, or on ``stop(force=True)``, running
      tasks are cancelled and released. Cancelled from outside (a
      ``move_on_after`` around ``run``, a cancelled nursery), it releases the
      running and prefetched tasks unspent, as a forced stop does: only the
      attempt's own deadline makes a ``TaskTimeout``.
    """

    def __init__(self, config: WorkerConfig, handler: Any) -> None:
        self.name = config.name
        self.backend = config.backend
        self.concurrency = config.concurrency
        self.prefetch = config.prefetch
        self.prefetch_max = config.prefetch_max
        self.lease_seconds = config.lease_seconds
        self.poll_interval = config.poll_interval
        self.storage_patience = config.storage_patience
        self.shutdown_timeout = config.shutdown_timeout
        self.backoff_policy = config.backoff
        self.timeout = config.timeout
        self._callbacks = list(config.callbacks)
        self.scheduler = config.scheduler or Scheduler(self.backend, ())
        self.context = WorkerContext(self)
        inner, self.args_type = resolve(handler, data=dict(config.data), context=self.context)
        self.service: Service[Task[Any], Any] = ServiceBuilder(config.layers).wrap(inner)
        self._decode = self.backend.codec.decoder(self.args_type)
        self._codec_name = getattr(self.backend.codec, "name", "json")
        self._encode = self.backend.codec.encode
        self._reset()
        self._done = self._failed = self._killed = self._released = 0
        self._serving = False

    def _reset(self) -> None:
        self._stopping = False
        self._ran = False
        self._stop_event = trio.Event()
        self._burst = False
        self._consumer: Consumer | None = None
        self._task_scopes: list[trio.CancelScope | None] = [None] * self.concurrency
        self._grace: trio.CancelScope | None = None
        self._live_slots = 0
        self._slots_done = trio.Event()
        self._idle_watch = trio.CancelScope()
        self._running = 0
        self._scope_of: dict[str, trio.CancelScope] = {}  # running task id -> its slot's scope
        self._cancelled: set[str] = set()  # running tasks cancel_task asked to stop
        self._cancelled_scopes: set[trio.CancelScope] = set()  # their slots' scopes

    # -- control --

    @property
    def is_shutting_down(self) -> bool:
        """Whether a stop was requested."""
        return self._stopping

    def stop(self, *, force: bool = False) -> None:
        """Stop gracefully; a second call, or ``force=True``, cancels running tasks.

        Graceful: stop claiming, release prefetched tasks now, let running
        ones finish within the shutdown timeout. Forced: cancel the running
        tasks and release them (their attempt does not count).
        """
        if self._ran and not self._serving:
            self._reset()  # between runs: this stop is for the next run
        if self._stopping:
            force = True
        else:
            self._stopping = True
            self._stop_event.set()
            self._emit(EventKind.STOPPING)
        c = self._consumer
        if c is not None:
            self._released += c.stop_claiming()
        if force:
            for scope in self._task_scopes:
                if scope is not None:
                    scope.cancel("the worker is shutting down")
            if self._grace is not None:
                self._grace.cancel()

    def statistics(self) -> WorkerStatistics:
        """Return a ``WorkerStatistics`` snapshot."""
        c = self._consumer
        return WorkerStatistics(
            name=self.name,
            concurrency=self.concurrency,
            running=self._running,
            prefetched=0 if c is None else c.buffered,
            done=self._done,
            failed=self._failed,
            killed=self._killed,
            released=self._released,
            shutting_down=self._stopping,
            schedules=self.scheduler.statistics(),
        )

    def _emit(self, kind: EventKind, **fields: Any) -> None:
        event = WorkerEvent(kind, self.name, **fields)
        for cb in self._callbacks:
            try:
                cb(event)
            except Exception:
                log.exception("event callback %r failed on %s", cb, kind.value)

    # -- running --

    async def run(self, *, burst: bool = False) -> None:
        """Run until stopped (or, with ``burst``, until nothing is ready to run)."""
        await self.serve(burst=burst)

    async def serve(
        self, *, burst: bool = False, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the worker; ``task_status.started()`` once it is claiming.

        Use as ``await nursery.start(worker.serve)``.

        Args:
          burst: Stop by itself once no task is ready and none is running.
        """
        if self._serving:
            raise RuntimeError(f"worker {self.name!r} is already running")
        if self._ran:
            self._reset()  # a worker may run again after it stopped
        self._ran = True
        self._serving = True
        self._burst = burst
        registered = _unique_name(self.name)
        try:
            async with self.backend.open_consumer(
                concurrency=self.concurrency,
                prefetch=self.prefetch,
                prefetch_max=self.prefetch_max,
                lease_seconds=self.lease_seconds,
                poll_interval=self.poll_interval,
                give_up_after=self.storage_patience,
                worker=registered,
            ) as consumer:
                self._consumer = consumer
                consumer.on_cancel = self._cancel_running
                self._live_slots = self.concurrency
                try:
                    async with open_nursery() as nursery:
                        for i in range(self.concurrency):
                            nursery.start_soon(self._slot, consumer, i)
                        nursery.start_soon(self._watch_idle, consumer)
                        nursery.start_soon(self.scheduler.run, self._stop_event)
                        self._emit(EventKind.START)
                        task_status.started()
                        if self._stopping:
                            self.stop()
                        await self._stop_event.wait()
                        with trio.move_on_after(self.shutdown_timeout) as grace:
                            self._grace = grace
                            await self._slots_done.wait()
                        if not self._slots_done.is_set():
                            if trio.current_time() >= grace.deadline:  # not a second stop
                                log.warning("%s: shutdown timeout, cancelling tasks", self.name)
                            self.stop(force=True)
                finally:
                    # Cancelled from outside (or failed): what waits in the
                    # prefetch channel is given back as at a stop (a no-op after one).
                    self._released += consumer.stop_claiming()
                    self._consumer = None
                    self._emit(EventKind.STOP)
        finally:
            _live_names.discard(registered)
            self._serving = False

    def _cancel_running(self, ids: list[str]) -> None:
        # Storage says cancel_task asked to stop these: cancel the scope of
        # each one running here (the consumer has dropped the buffered ones
        # from its channel already, and drops one in transit to a slot).
        for id in ids:
            scope = self._scope_of.get(id)
            if scope is not None:
                self._cancelled.add(id)
                self._cancelled_scopes.add(scope)
                scope.cancel()

    def report_progress(self, id: str, text: str) -> None:
        """Keep the progress a running task reported (stored with the next extension)."""
        c = self._consumer
        if c is not None and id in self._scope_of:
            c.report_progress(id, text)

    async def _watch_idle(self, consumer: Consumer) -> None:
        # IDLE once per idle spell; a burst run stops at the first. Ends
        # with the last slot.
        with self._idle_watch:
            while True:
                await consumer.wait_idle()
                self._emit(EventKind.IDLE)
                if self._burst and not self._stopping:
                    self.stop()
                    return
                await consumer.wait_busy()

    async def _slot(self, consumer: Consumer, i: int) -> None:
        # A slot runs one task at a time under the slot's cancel scope, so
        # cancelling that scope cancels exactly the task it is running. A
        # scope is entered once, so a new one is made after a cancellation.
        try:
            while not self._stopping:
                with trio.CancelScope() as scope:
                    self._task_scopes[i] = scope
                    enter_boundary(scope)  # its deadline is the task's; any outside is not
                    while not self._stopping:
                        try:
                            rec = consumer.receive_nowait()
                        except trio.WouldBlock:
                            try:
                                rec = await consumer.receive()
                            except trio.EndOfChannel:
                                return
                        except trio.EndOfChannel:
                            return
                        if self._stopping:
                            consumer.give_back(rec.id)
                            self._released += 1
                            return
                        await self._execute(consumer, rec, scope)
                        if self.timeout is not None and scope.cancel_called:
                            break  # the deadline fired: the next task needs a new scope
                        if self._cancelled_scopes and scope in self._cancelled_scopes:
                            self._cancelled_scopes.discard(scope)
                            break  # cancel_task cancelled it: likewise
        finally:
            self._task_scopes[i] = None
            self._live_slots -= 1
            if self._live_slots == 0:
                self._slots_done.set()
                self._idle_watch.cancel()

    async def _execute(self, consumer: Consumer, rec: StoredTask, scope: trio.CancelScope) -> None:
        self._running += 1
        self._scope_of[rec.id] = scope
        consumer.started(rec.id)
        timeout = self.timeout
        if timeout is not None:
            # Rounded up to 1/64 of the timeout: tasks that start close together
            # share one deadline, so the scope is re-registered with Trio's
            # deadline heap a few times per timeout, not once per task. The
            # deadline stays until the next task sets its own: resetting it
            # costs as much again, and an idle slot whose stale deadline fires
            # only gets a fresh scope.
            grain = timeout / 64
            deadline = math.ceil((trio.current_time() + timeout) / grain) * grain
            if deadline != scope.deadline:
                scope.deadline = deadline
        verdict: Verdict | None = None
        error: BaseException | None = None
        result: Any = None
        try:
            pushed = rec.meta.get(CODEC_KEY) if rec.meta else None
            if pushed is not None and pushed != self._codec_name:
                verdict = self._other_codec(rec, pushed)
            else:
                try:
                    args = self._decode(rec.payload)
                except Exception as exc:  # CodecError, or worse: never crash a worker
                    verdict = self._undecodable(rec, exc, pushed)
            if verdict is None:
                # The service call, inline: this is the per-task hot path.
                try:
                    result = await self.service(to_task(rec, args, None, Status.RUNNING))
                except Exception as exc:
                    error = exc
                except BaseException as exc:  # cancelled: by the deadline, a shutdown, outside
                    error = exc
                    raise
        finally:
            self._running -= 1
            del self._scope_of[rec.id]
            if self._cancelled and rec.id in self._cancelled:
                self._cancelled.discard(rec.id)
                verdict = CANCELLED_VERDICT  # even if it shielded itself and returned
            if verdict is None:
                verdict = (
                    DONE_VERDICT
                    if error is None
                    else decide(
                        rec.attempts,
                        rec.max_attempts,
                        error,
                        backoff=self.backoff_policy,
                        timeout=timeout,
                        with_traceback=True,
                        snoozes=rec.snoozes,
                        timed_out=own_deadline(error),
                    )
                )
            self._account(rec, verdict, result)
            if verdict is DONE_VERDICT:
                consumer.finished(self._done_outcome(rec, result))
            elif (outcome := verdict.outcome(rec.id)) is not None:
                consumer.finished(outcome)
            else:  # given back, its attempt uncounted
                consumer.give_back(rec.id)

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else ("running" if self._consumer else "idle")
        return (
            f"<Worker {self.name!r} {state} running={self._running}/{self.concurrency} "
            f"done={self._done} failed={self._failed} killed={self._killed}>"
        )
