"""The worker command's live progress line and its closing summary."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Sequence
from typing import TextIO

import trio

from .._context import WorkerStatistics
from .._worker import Worker

__all__ = ["Progress", "ProgressLogHandler", "combined", "summary_line", "terminal_width"]

#: Seconds between two refreshes of the live line.
REFRESH_INTERVAL = 0.25
#: The live rate is measured over this many seconds.
RATE_WINDOW = 2.0


def _finished(stats: WorkerStatistics) -> int:
    return stats.done + stats.failed + stats.killed


def combined(workers: Sequence[Worker]) -> WorkerStatistics:
    """Return the statistics of several workers added up (one line for them all)."""
    each = [w.statistics() for w in workers]
    return WorkerStatistics(
        name=", ".join(s.name for s in each),
        concurrency=sum(s.concurrency for s in each),
        running=sum(s.running for s in each),
        prefetched=sum(s.prefetched for s in each),
        done=sum(s.done for s in each),
        failed=sum(s.failed for s in each),
        killed=sum(s.killed for s in each),
        released=sum(s.released for s in each),
        shutting_down=any(s.shutting_down for s in each),
    )


def terminal_width(stream: TextIO) -> int:
    """Return the columns of the terminal ``stream`` writes to ($COLUMNS, else 80)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):  # not a file (io.UnsupportedOperation)
        return shutil.get_terminal_size((80, 24)).columns


def _eta(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


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
    """Draws a live status line for workers on a terminal, and the summary.

    The line fits the terminal's width; with ``total`` (the tasks ready when
    the run began) it shows how many of them are finished and an ETA.

    Example::

        progress = Progress([worker], stream=sys.stderr, live=sys.stderr.isatty())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.run)
            await worker.run(burst=True)
            nursery.cancel_scope.cancel()
        progress.finish()

    Args:
      workers: The workers whose ``statistics()`` are shown, added up.
      stream: Where to write (a terminal for the live line).
      live: Whether to draw the live line; the summary is written either way.
      total: The tasks to do, if known (for ``N/total`` and the ETA).
    """

    def __init__(
        self,
        workers: Worker | Sequence[Worker],
        *,
        stream: TextIO,
        live: bool,
        total: int | None = None,
    ) -> None:
        self.workers = [workers] if isinstance(workers, Worker) else list(workers)
        self.stream = stream
        self.live = live
        self.total = total
        self.started = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()
        self._shown = False

    def line(self) -> str:
        """Return the live line for the workers' statistics now, cut to the terminal's width."""
        stats = combined(self.workers)
        now = time.monotonic()
        total = _finished(stats)
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        rate = (total - n0) / (now - t0) if now > t0 else 0.0
        state = " (stopping)" if stats.shutting_down else ""
        ended = stats.done + stats.killed
        head = f"{rate:.0f} tasks/s"
        if self.total:  # what matters most comes first: the line is cut at the right
            left = max(0, self.total - ended)
            eta = f" | ETA {_eta(left / rate)}" if rate > 0 and left else ""
            done = min(ended, self.total)
            head = f"{ended}/{self.total} ({100 * done // self.total}%) | {head}{eta}"
        text = (
            f"{head} | done {stats.done}, failed {stats.failed}, killed {stats.killed}, "
            f"running {stats.running}/{stats.concurrency} | {now - self.started:.1f}s{state}"
        )
        width = terminal_width(self.stream) - 1  # the last column would wrap on some terminals
        return text if len(text) <= width else text[: max(1, width - 1)] + "…"

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
        text = summary_line(combined(self.workers), time.monotonic() - self.started)
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
