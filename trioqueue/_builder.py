"""``WorkerBuilder``: configure a worker step by step, as in Apalis, then build it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._backend import Backend
from ._backoff import Backoff, Exponential, backoff_from
from ._context import EventCallback
from ._durations import seconds as check_seconds
from ._flow._define import Flow
from ._flow._worker import FlowWorker
from ._prefetch import adaptive_prefetch_max
from ._schedule._policy import Schedule
from ._schedule._scheduler import Scheduler
from ._service import Layer
from ._worker import Worker, WorkerConfig

__all__ = ["DEFAULT_CONCURRENCY", "WorkerBuilder"]

#: Tasks a worker runs at once unless told otherwise.
DEFAULT_CONCURRENCY = 10


class WorkerBuilder:
    """Builds a ``Worker``, as in Apalis.

    Example::

        worker = (
            WorkerBuilder("email-worker")
            .backend(backend)
            .data(State())
            .layer(TimeoutLayer(30))
            .concurrency(10)
            .build(send_email)
        )
        await worker.run()

    Each method returns the builder; ``build`` resolves the handler and fails
    at once (with ``HandlerError``) if a parameter cannot be provided.

    Args:
      name: The worker's name (in logs, statistics and the workers' registry).
      handler: The handler ``build()`` runs, if known before the builder is
        configured; code that configures builders (``configure_worker`` of the
        command line) reads it as ``builder.handler``.
    """

    def __init__(self, name: str, *, handler: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("a worker name must be a non-empty str")
        self._name = name
        self._handler = handler
        self._backend: Backend | None = None
        self._data: dict[type, object] = {}
        self._layers: list[Layer] = []
        self._concurrency = DEFAULT_CONCURRENCY
        self._prefetch: int | None = None
        self._lease = 30.0
        self._poll = 1.0
        self._patience = math.inf
        self._shutdown_timeout = 30.0
        self._backoff: Backoff = Exponential()
        self._timeout: float | None = None
        self._callbacks: list[EventCallback] = []
        self._schedules: list[Schedule] = []

    @property
    def name(self) -> str:
        """The worker's name, as given to ``WorkerBuilder(name)``."""
        return self._name

    @property
    def handler(self) -> Any:
        """The handler given as ``WorkerBuilder(name, handler=...)``, or None.

        ``trioqueue worker`` gives it, so that a module's
        ``configure_worker(builder)`` knows which of its handlers it configures.
        """
        return self._handler

    def backend(self, backend: Backend) -> WorkerBuilder:
        """Set the backend whose queue the worker consumes."""
        if not isinstance(backend, Backend):
            raise TypeError(f"expected a trioqueue backend, got {type(backend).__name__}")
        self._backend = backend
        return self

    def data(self, obj: object) -> WorkerBuilder:
        """Register shared state; handlers ask for it as ``Data[type(obj)]``."""
        self._data[type(obj)] = obj
        return self

    def layer(self, layer: Layer) -> WorkerBuilder:
        """Add a middleware layer; the first added sees each task first."""
        if not hasattr(layer, "layer"):
            raise TypeError(f"{layer!r} is not a Layer: it has no layer(inner) method")
        self._layers.append(layer)
        return self

    def concurrency(self, n: int) -> WorkerBuilder:
        """Set how many tasks run at once (default ``DEFAULT_CONCURRENCY``)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {n!r}")
        self._concurrency = n
        return self

    def prefetch(self, n: int) -> WorkerBuilder:
        """Fix the prefetch channel's capacity.

        By default it is adaptive: it starts at the concurrency and grows (up
        to 4 times the concurrency, at most 128) while slots wait
        for tasks and a backlog is ready, then falls back as soon as a claim
        finds the backlog drained. Slow tasks never grow it, so workers share
        a queue fairly; fast ones keep the pipe full.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"prefetch must be an int >= 1, got {n!r}")
        self._prefetch = n
        return self

    def lease(self, seconds: float) -> WorkerBuilder:
        """Set the lease length in seconds (default 30); it is renewed every third."""
        self._lease = check_seconds("lease", seconds, positive=True)
        return self

    def poll_interval(self, seconds: float) -> WorkerBuilder:
        """Set the longest wait between claims when storage gives no wake-up (default 1)."""
        self._poll = check_seconds("poll_interval", seconds, positive=True)
        return self

    def storage_patience(self, seconds: float) -> WorkerBuilder:
        """Set how long storage may keep failing before the worker stops (default: forever).

        A storage call that meets a transient error (a lost connection, a
        locked file, a full disk) is retried with backoff; once one has kept
        failing for ``seconds``, the worker stops with ``BackendError``
        instead of retrying forever. ``trioqueue worker --burst`` sets it
        to ``--wait``.
        """
        self._patience = check_seconds("storage_patience", seconds, infinite=True)
        return self

    def shutdown_timeout(self, seconds: float) -> WorkerBuilder:
        """Set how long a graceful stop waits for running tasks (default 30)."""
        self._shutdown_timeout = check_seconds("shutdown_timeout", seconds, infinite=True)
        return self

    def timeout(self, seconds: float | None) -> WorkerBuilder:
        """Give every attempt a deadline; an attempt past it fails with ``TaskTimeout``.

        The deadline is set on the cancel scope each task already runs under,
        rounded up to 1/64 of ``seconds`` (so it may fire up to that much
        later), which makes it nearly free per task; the failed attempt follows
        the backoff like any other failure. ``TimeoutLayer`` does the same,
        exactly, inside a stack.
        """
        self._timeout = (
            None if seconds is None else check_seconds("timeout", seconds, positive=True)
        )
        return self

    def backoff(self, policy: Backoff | Callable[[int], float]) -> WorkerBuilder:
        """Set the delay policy after a failed attempt (default ``Exponential()``)."""
        self._backoff = backoff_from(policy)
        return self

    def on_event(self, callback: EventCallback) -> WorkerBuilder:
        """Call ``callback(WorkerEvent)`` on start, idle, task done/failed/killed, stop.

        Callbacks run on the worker's task and must not block.
        """
        self._callbacks.append(callback)
        return self

    def cron(
        self,
        expr: str,
        *,
        args: Any = None,
        tz: str = "UTC",
        catch_up: str = "latest",
        name: str | None = None,
    ) -> WorkerBuilder:
        """Also push one task with ``args`` to the worker's queue at each tick of a cron expression.

        Any number of workers (on any hosts) may run the same schedule: each
        tick's task id is ``sched:<name>:<tick in UTC>``, so a tick is stored
        once, and a worker that starts or restarts catches up from the last
        tick any of them recorded. The handler reads the tick's time with a
        parameter annotated ``Tick``. See ``docs/schedules.md``.

        Args:
          expr: Five fields (minute hour day-of-month month day-of-week), an
            optional sixth leading field of seconds, or ``@hourly``, ``@daily``,
            ``@weekly``, ``@monthly``, ``@yearly`` (parsed by cronsim).
          args: The args of every tick's task (encoded by the backend's codec).
          tz: The IANA zone the expression is read in (DST as cron does it:
            a time skipped by a spring-forward runs at the first minute after
            the gap; a time repeated by a fall-back runs once, the first time).
          catch_up: What the first look after downtime pushes of the missed
            ticks: ``"latest"`` (the last one), ``"all"`` (each, at most
            ``MAX_CATCH_UP`` = 100, the latest ones) or ``"none"``.
          name: The schedule's name in storage, its identity. By default
            ``<queue>:cron:<expr>[@<tz>][#<digest of args>]``, from the
            backend's queue, never from the worker's name or process; a new
            name starts afresh.

        Raises:
          ValueError: for a bad expression, an unknown zone or catch-up mode.
        """
        self._schedules.append(Schedule.cron(expr, args=args, tz=tz, catch_up=catch_up, name=name))
        return self

    def every(self, seconds: float, *, args: Any = None, name: str | None = None) -> WorkerBuilder:
        """Also push one task with ``args`` to the worker's queue every ``seconds``.

        Ticks are the multiples of ``seconds`` since the epoch (UTC), so every
        instance computes the same ones; after downtime only the latest
        missed tick is pushed. Ids and ``Tick`` as for ``cron``.

        Args:
          seconds: The interval (at least 0.001).
          args: The args of every tick's task.
          name: The schedule's name (default
            ``<queue>:every:<seconds>s[#<digest of args>]``, as for ``cron``).
        """
        self._schedules.append(Schedule.every(seconds, args=args, name=name))
        return self

    def build(self, handler: Any = None) -> Worker:
        """Return the ``Worker`` running ``handler`` (a function, service or stack).

        A ``Workflow`` or ``DagFlow`` gives a worker running its nodes.

        Args:
          handler: What the worker runs; by default the builder's ``handler``.

        Raises:
          HandlerError: if the handler cannot be resolved (names the parameter);
            ``FlowError`` (one) for a flow that cannot run.
          ValueError: if no backend was set, no handler given, ``handler``
            is not the one the builder was made for, or two schedules share a
            name (given, or by default: the same spec and args).
          CodecError: if a schedule's args cannot be encoded.
        """
        if self._backend is None:
            raise ValueError(f"worker {self._name!r} has no backend: call .backend(b) first")
        if handler is None:
            handler = self._handler
            if handler is None:
                raise ValueError(f"worker {self._name!r} has no handler: pass it to build()")
        elif self._handler is not None and handler is not self._handler:
            raise ValueError(
                f"worker {self._name!r} was made for the handler {self._handler!r}, not {handler!r}"
            )
        config = WorkerConfig(
            name=self._name,
            backend=self._backend,
            data=dict(self._data),
            layers=tuple(self._layers),
            concurrency=self._concurrency,
            prefetch=self._prefetch or self._concurrency,
            prefetch_max=self._prefetch or adaptive_prefetch_max(self._concurrency),
            lease_seconds=self._lease,
            poll_interval=self._poll,
            storage_patience=self._patience,
            shutdown_timeout=self._shutdown_timeout,
            backoff=self._backoff,
            timeout=self._timeout,
            callbacks=tuple(self._callbacks),
            scheduler=Scheduler(self._backend, tuple(self._schedules)),
        )
        if isinstance(handler, Flow):
            return FlowWorker(config, handler)
        return Worker(config, handler)
