"""The worker command's live progress line and its closing summary."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TextIO

import trio

from .._context import WorkerStatistics
from .._worker import Worker

__all__ = ["Progress", "ProgressLogHandler", "summary_line"]

#: Seconds between two refreshes of the live line.
REFRESH_INTERVAL = 0.25
#: The live rate is measured over this many seconds.
RATE_WINDOW = 2.0


def _finished(stats: WorkerStatistics) -> int:
    return stats.done + stats.failed + stats.killed


def summary_line(stats: WorkerStatistics, elapsed: float) -> str:
    """Return ``done N, failed N, killed N in Xs (R tasks/s)`` for a finished run.

    The rate counts every finished attempt (done, failed and killed).
    """
    rate = _finished(stats) / elapsed if elapsed > 0 else 0.0
    return (
        f"done {stats.done}, failed {stats.failed}, killed {stats.killed} "
        f"in {elapsed:.2f}s ({rate:.1f} tasks/s)"
    )


class Progress:
    """Draws a live status line for one worker on a terminal, and the summary.

    Example::

        progress = Progress(worker, stream=sys.stderr, live=sys.stderr.isatty())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            await worker.run(burst=True)
            nursery.cancel_scope.cancel()
        progress.finish()

    Args:
      worker: The worker whose ``statistics()`` are shown.
      stream: Where to write (a terminal for the live line).
      live: Whether to draw the live line; the summary is written either way.
    """

    def __init__(self, worker: Worker, *, stream: TextIO, live: bool) -> None:
        self.worker = worker
        self.stream = stream
        self.live = live
        self.started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()
        self._shown = False

    def line(self) -> str:
        """Return the live line for the worker's statistics now."""
        stats = self.worker.statistics()
        now = time.monotonic()
        total = _finished(stats)
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        rate = (total - n0) / (now - t0) if now > t0 else 0.0
        state = " (stopping)" if stats.shutting_down else ""
        return (
            f"done {stats.done}, failed {stats.failed}, killed {stats.killed}, "
            f"running {stats.running}/{stats.concurrency} | {rate:.0f} tasks/s | "
            f"{now - self.started:.1f}s{state}"
        )

    def clear(self) -> None:
        """Erase the live line (before other output is written)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def draw(self) -> None:
        """Redraw the live line in place."""
        if not self.live:
            return
        self.stream.write("\r\x1b[K" + self.line())
        self.stream.flush()
        self._shown = True

    async def run(self) -> None:
        """Redraw the live line a few times a second until cancelled."""
        if not self.live:
            return
        while True:
            self.draw()
            await trio.sleep(REFRESH_INTERVAL)

    def finish(self) -> str:
        """Erase the live line, write the summary line and return it."""
        self.clear()
        text = summary_line(self.worker.statistics(), time.monotonic() - self.started)
        self.stream.write(text + "\n")
        self.stream.flush()
        return text


class ProgressLogHandler(logging.StreamHandler[TextIO]):
    """A log handler that erases the live line before writing a record.

    The next refresh draws the line again under the record.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.progress: Progress | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` below the live line."""
        if self.progress is not None:
            self.progress.clear()
        super().emit(record)
