"""``Monitor``: run several workers and turn SIGINT/SIGTERM into a graceful shutdown."""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import AsyncIterator, Iterable

import trio

from ._durations import seconds
from ._nursery import open_nursery
from ._worker import Worker

__all__ = ["Monitor"]

log = logging.getLogger("trioqueue.monitor")


class Monitor:
    """Runs workers together and owns their shutdown.

    Example::

        await Monitor(shutdown_timeout=30).register(email_worker).register(sms_worker).run()

    The first SIGINT or SIGTERM stops every worker gracefully: no more
    claiming, prefetched tasks released at once, running tasks given up to
    the shutdown timeout. A second signal (or the timeout) cancels what still
    runs and releases it. ``run()`` returns when every worker has stopped.

    Args:
      shutdown_timeout: Overrides each worker's own, if given.
      signals: The signals to handle (default SIGINT and SIGTERM). Signal
        handling needs the main thread; pass ``()`` elsewhere.
    """

    def __init__(
        self,
        *,
        shutdown_timeout: float | None = None,
        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
    ) -> None:
        self._workers: list[Worker] = []
        self._timeout = (
            None
            if shutdown_timeout is None
            else seconds("shutdown_timeout", shutdown_timeout, infinite=True)
        )
        self._signals = tuple(signals)
        self.signals_received = 0

    def register(self, worker: Worker) -> Monitor:
        """Add a worker; returns the monitor."""
        if not isinstance(worker, Worker):
            raise TypeError(f"expected a Worker, got {type(worker).__name__}")
        if self._timeout is not None:
            worker.shutdown_timeout = self._timeout
        self._workers.append(worker)
        return self

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The registered workers."""
        return tuple(self._workers)

    def stop(self, *, force: bool = False) -> None:
        """Stop every worker, as the first (or, with ``force``, the second) signal would."""
        for w in self._workers:
            w.stop(force=force)

    async def run(
        self, *, burst: bool = False, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the workers until they all stop; ``task_status.started()`` once all claim.

        Args:
          burst: Each worker stops by itself once nothing is ready and nothing runs.
        """
        if not self._workers:
            raise ValueError("Monitor has no workers: call register(worker) first")
        with trio.open_signal_receiver(*self._signals) if self._signals else _nothing() as sigs:
            async with open_nursery() as outer:
                if sigs is not None:
                    outer.start_soon(self._watch, sigs)
                async with open_nursery() as inner:
                    for w in self._workers:
                        await inner.start(functools.partial(w.serve, burst=burst))
                    task_status.started()
                outer.cancel_scope.cancel()

    async def _watch(self, sigs: AsyncIterator[int]) -> None:
        async for signum in sigs:
            self.signals_received += 1
            force = self.signals_received > 1
            log.warning(
                "received %s: %s",
                signal.Signals(signum).name,
                "second signal, cancelling running tasks" if force else "graceful shutdown",
            )
            self.stop(force=force)

    def __repr__(self) -> str:
        return f"<Monitor workers={[w.name for w in self._workers]}>"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
