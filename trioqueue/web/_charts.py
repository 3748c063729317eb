"""Throughput charts drawn on the server as SVG: no script, nothing to download.

``per_bucket`` turns a driver's histogram of finished tasks into two series
(done, and failures: killed), ``bar_chart`` draws them as stacked bars.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape

from .._task import Status

__all__ = ["Window", "bar_chart", "per_bucket"]


@dataclass(frozen=True, slots=True)
class Window:
    """A chart's time span: ``buckets`` bars of ``step`` seconds each, ending now."""

    name: str
    buckets: int
    step: float

    @property
    def seconds(self) -> float:
        """The span covered, in seconds."""
        return self.buckets * self.step


def per_bucket(
    rows: Iterable[tuple[int, Status, int]], buckets: int
) -> tuple[list[int], list[int]]:
    """Return (done, killed) counts per bucket from ``(bucket, status, count)`` rows.

    Rows outside ``0 <= bucket < buckets`` are left out; CANCELLED is neither
    throughput nor a failure.
    """
    done = [0] * buckets
    killed = [0] * buckets
    for bucket, status, n in rows:
        if 0 <= bucket < buckets:
            if status is Status.DONE:
                done[bucket] += n
            elif status is Status.KILLED:
                killed[bucket] += n
    return done, killed


def bar_chart(
    done: Sequence[int],
    killed: Sequence[int],
    *,
    step: float,
    label: str,
    width: int = 720,
    height: int = 110,
) -> str:
    """Return an SVG of stacked bars, done below and killed above, in tasks per minute.

    Each bar has a ``<title>`` (the browser's tooltip) with its counts; the
    largest rate labels the axis. ``label`` names the chart for screen readers.
    """
    n = max(1, len(done))
    minutes = step / 60.0
    rates = [(d / minutes, k / minutes) for d, k in zip(done, killed, strict=True)]
    top = max((d + k for d, k in rates), default=0.0) or 1.0
    plot_h = height - 18
    bar_w = width / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="0" y1="{plot_h}" x2="{width}" y2="{plot_h}"/>',
    ]
    for i, (d, k) in enumerate(rates):
        x = i * bar_w
        hd = plot_h * d / top
        hk = plot_h * k / top
        ago = (n - i) * step
        tip = f"{_ago(ago)} ago: {done[i]} done, {killed[i]} killed ({d + k:.1f}/min)"
        parts.append(f"<g><title>{escape(tip)}</title>")
        if hd:
            parts.append(_rect("done", x, plot_h - hd, bar_w, hd))
        if hk:
            parts.append(_rect("killed", x, plot_h - hd - hk, bar_w, hk))
        parts.append(_rect("slot", x, 0, bar_w, plot_h - hd - hk))
        parts.append("</g>")
    parts.append(f'<text class="tick" x="2" y="10">{_fmt(top)}/min</text>')
    parts.append(f'<text class="tick" x="2" y="{height - 3}">{_ago(n * step)} ago</text>')
    parts.append(
        f'<text class="tick" x="{width - 2}" y="{height - 3}" text-anchor="end">now</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _rect(cls: str, x: float, y: float, w: float, h: float) -> str:
    return f'<rect class="{cls}" x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}"/>'


def _fmt(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}"


def _ago(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}m"
