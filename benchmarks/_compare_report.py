"""What ``compare.py`` prints at the end: one JSON line per figure, then the ratios."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

Results = dict[str, list[dict[str, Any] | None]]
#: The measured numbers of a child's result; the rest (jobs, left...) are facts.
METRICS = ("per_s", "seconds", "p50_ms", "p99_ms", "push_p50_ms")

TQ, PQ, FL = "trioqueue/postgresql", "pgqueuer/postgresql", "floor/postgresql"
TS, FS = "trioqueue/sqlite", "floor/sqlite"
TM, FM = "trioqueue/memory", "floor/memory"
CL = "clients/postgresql"

#: (section, label, numerator figure, denominator figure, metric). Each is put so
#: that above 1 (or nearer 1, for a fraction of the floor) is better for the first.
RATIOS: list[tuple[str, str, str, str, str]] = [
    ("PostgreSQL: trioqueue / pgqueuer (throughput), pgqueuer / trioqueue (time)", "", "", "", ""),
    ("", "push_single pushes/s", f"{TQ}/push_single", f"{PQ}/push_single", "per_s"),
    ("", "push_single p50 call time", f"{PQ}/push_single", f"{TQ}/push_single", "p50_ms"),
    ("", "sync client push_single pushes/s", f"{CL}/push_single_sync", f"{PQ}/push_single",
     "per_s"),
    ("", "sync client push_single p50", f"{PQ}/push_single", f"{CL}/push_single_sync", "p50_ms"),
    ("", "asyncio client push_single pushes/s", f"{CL}/push_single_asyncio",
     f"{PQ}/push_single", "per_s"),
    ("", "asyncio client push_single p50", f"{PQ}/push_single", f"{CL}/push_single_asyncio",
     "p50_ms"),
    ("", "push_bulk jobs/s", f"{TQ}/push_bulk", f"{PQ}/push_bulk", "per_s"),
    ("", "end_to_end c10 jobs/s", f"{TQ}/end_to_end_c10", f"{PQ}/end_to_end_c10", "per_s"),
    ("", "end_to_end c100 jobs/s", f"{TQ}/end_to_end_c100", f"{PQ}/end_to_end_c100", "per_s"),
    ("", "end_to_end c10 (pgq worker cap)", f"{TQ}/end_to_end_c10",
     f"{PQ}/end_to_end_c10_worker_cap", "per_s"),
    ("", "end_to_end c100 (pgq worker cap)", f"{TQ}/end_to_end_c100",
     f"{PQ}/end_to_end_c100_worker_cap", "per_s"),
    ("", "enqueue_to_start p50", f"{PQ}/enqueue_to_start", f"{TQ}/enqueue_to_start", "p50_ms"),
    ("", "enqueue_to_start p99", f"{PQ}/enqueue_to_start", f"{TQ}/enqueue_to_start", "p99_ms"),
    ("PostgreSQL: fraction of the raw-SQL floor (throughput)", "", "", "", ""),
    ("", "trioqueue push_single / INSERT+COMMIT", f"{TQ}/push_single", f"{FL}/insert_single",
     "per_s"),
    ("", "pgqueuer  push_single / INSERT+COMMIT", f"{PQ}/push_single", f"{FL}/insert_single",
     "per_s"),
    ("", "trioqueue push_bulk / COPY", f"{TQ}/push_bulk", f"{FL}/insert_bulk", "per_s"),
    ("", "pgqueuer  push_bulk / COPY", f"{PQ}/push_bulk", f"{FL}/insert_bulk", "per_s"),
    ("", "trioqueue end_to_end c10 / claim b10", f"{TQ}/end_to_end_c10",
     f"{FL}/claim_complete_b10", "per_s"),
    ("", "pgqueuer  end_to_end c10 / claim b10", f"{PQ}/end_to_end_c10",
     f"{FL}/claim_complete_b10", "per_s"),
    ("", "pgqueuer  c10 worker cap / claim b10", f"{PQ}/end_to_end_c10_worker_cap",
     f"{FL}/claim_complete_b10", "per_s"),
    ("", "trioqueue end_to_end c100 / claim b100", f"{TQ}/end_to_end_c100",
     f"{FL}/claim_complete_b100", "per_s"),
    ("", "pgqueuer  end_to_end c100 / claim b100", f"{PQ}/end_to_end_c100",
     f"{FL}/claim_complete_b100", "per_s"),
    ("", "pgqueuer  c100 worker cap / claim b100", f"{PQ}/end_to_end_c100_worker_cap",
     f"{FL}/claim_complete_b100", "per_s"),
    ("SQLite: trioqueue as a fraction of the raw-SQL floor (throughput)", "", "", "", ""),
    ("", "push_single / INSERT (synchronous=NORMAL)", f"{TS}/push_single",
     f"{FS}/insert_single", "per_s"),
    ("", "push_bulk / executemany", f"{TS}/push_bulk", f"{FS}/insert_bulk", "per_s"),
    ("", "end_to_end c10 / claim b100", f"{TS}/end_to_end_c10", f"{FS}/claim_complete_b100",
     "per_s"),
    ("", "end_to_end c100 / claim b100", f"{TS}/end_to_end_c100", f"{FS}/claim_complete_b100",
     "per_s"),
    ("SQLite: the same, against the raw-SQL floor on trioqueue's own table", "", "", "", ""),
    ("", "push_bulk / executemany", f"{TS}/push_bulk", f"{FS}/schema_insert_bulk", "per_s"),
    ("", "end_to_end c10 / claim b100", f"{TS}/end_to_end_c10",
     f"{FS}/schema_claim_complete_b100", "per_s"),
    ("", "end_to_end c100 / claim b100", f"{TS}/end_to_end_c100",
     f"{FS}/schema_claim_complete_b100", "per_s"),
    ("", "the plain floor / the floor on trioqueue's table (claim)",
     f"{FS}/claim_complete_b100", f"{FS}/schema_claim_complete_b100", "per_s"),
    ("Memory: trioqueue end to end / the bare channel-and-nursery loop", "", "", "", ""),
    ("", "end_to_end c10 / bare loop c10", f"{TM}/end_to_end_c10", f"{FM}/bare_loop_c10",
     "per_s"),
    ("", "end_to_end c100 / bare loop c100", f"{TM}/end_to_end_c100", f"{FM}/bare_loop_c100",
     "per_s"),
]  # fmt: skip

#: (label, figure, metric): absolute figures, median and range over the rounds.
ABSOLUTE: list[tuple[str, str, str]] = [
    ("PostgreSQL enqueue_to_start p50 ms", f"{TQ}/enqueue_to_start", "p50_ms"),
    ("pgqueuer   enqueue_to_start p50 ms", f"{PQ}/enqueue_to_start", "p50_ms"),
    ("SQLite enqueue_to_start p50 ms", f"{TS}/enqueue_to_start", "p50_ms"),
    ("SQLite enqueue_to_start p99 ms", f"{TS}/enqueue_to_start", "p99_ms"),
    ("SQLite push_single pushes/s", f"{TS}/push_single", "per_s"),
]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def print_figures(emit: Callable[[str], None], figures: dict[str, Any], results: Results) -> None:
    """One JSON line per figure: its median, min and max over the rounds that succeeded."""
    for key, runs in results.items():
        fig = figures[key]
        ok = [r for r in runs if r is not None]
        line: dict[str, Any] = {
            "figure": key.rsplit("/", 1)[1],
            "system": fig.system,
            "backend": fig.backend,
            **fig.fields,
            "rounds": len(ok),
            "failed_rounds": len(runs) - len(ok),
        }
        if ok:
            line["jobs"] = ok[0].get("jobs")
            for m in METRICS:
                if all(m in r for r in ok):
                    line[m] = spread([r[m] for r in ok])
            if any("left" in r for r in ok):
                line["left_max"] = max(r.get("left", 0) for r in ok)
        emit(json.dumps(line))


def round_ratios(results: Results, num: str, den: str, metric: str) -> list[float]:
    """num/den of each round in which both were measured."""
    out = []
    for a, b in zip(results.get(num, []), results.get(den, []), strict=False):
        if a is not None and b is not None and b[metric]:
            out.append(a[metric] / b[metric])
    return out


def print_ratios(emit: Callable[[str], None], results: Results) -> None:
    """The table: for each pair, the median of the per-round ratios and their range."""
    width = max(len(r[1]) for r in RATIOS) + 2
    emit("")
    emit(f"{'ratio (median of per-round ratios)':<{width}}{'median':>8}  min-max")
    for section, label, num, den, metric in RATIOS:
        if section:
            emit(f"-- {section}")
            continue
        rs = round_ratios(results, num, den, metric)
        if not rs:
            emit(f"{label:<{width}}{'n/a':>8}")
            continue
        emit(f"{label:<{width}}{statistics.median(rs):>8.3f}  {min(rs):.3f}-{max(rs):.3f}")
    emit(f"-- {'absolute (median of the rounds)':<{width - 3}}")
    for label, fig, metric in ABSOLUTE:
        vs = [r[metric] for r in results.get(fig, []) if r is not None]
        if not vs:
            emit(f"{label:<{width}}{'n/a':>8}")
            continue
        emit(f"{label:<{width}}{statistics.median(vs):>8.1f}  {min(vs):.1f}-{max(vs):.1f}")
