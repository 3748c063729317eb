"""The throughput charts: histogram rows to series, series to SVG bars."""

from __future__ import annotations

import re

from trioqueue import Status
from trioqueue.web._charts import bar_chart, per_bucket


def test_per_bucket_splits_done_and_killed_and_drops_the_rest() -> None:
    rows = [(0, Status.DONE, 3), (0, Status.KILLED, 1), (2, Status.DONE, 5),
            (2, Status.CANCELLED, 9), (7, Status.DONE, 4), (-1, Status.DONE, 4)]  # fmt: skip
    assert per_bucket(rows, 3) == ([3, 0, 5], [1, 0, 0])


def test_bar_heights_follow_the_rates_per_minute() -> None:
    svg = bar_chart([6, 0, 3], [0, 3, 0], step=120.0, label="x<y")
    assert 'aria-label="x&lt;y"' in svg
    heights = {
        (cls, float(x)): float(h)
        for cls, x, h in re.findall(r'<rect class="(done|killed)" x="([\d.]+)" y="[\d.]+" '
                                    r'width="[\d.]+" height="([\d.]+)"', svg)
    }  # fmt: skip
    assert heights[("done", 0.0)] == 92.0  # the largest: 3/min over 2-minute buckets
    assert heights[("killed", 240.0)] == 46.0
    assert heights[("done", 480.0)] == 46.0
    assert "3.0/min" in svg and "6m ago" in svg
    assert "<title>6m ago: 6 done, 0 killed (3.0/min)</title>" in svg
