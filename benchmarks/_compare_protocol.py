"""The contract between ``compare.py`` and its child processes: payload, arguments, report.

Every figure runs in a fresh child process (``_compare_trioqueue.py``,
``_compare_pgqueuer.py``, ``_compare_floor.py``), so each system gets its own
event loop and interpreter state. A child takes ``FIGURE --url URL --jobs N``
(plus ``--concurrency`` and ``--out`` where the figure needs them) and prints
its result as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from typing import Any

#: Jobs per call of a bulk push, for every system and the floors.
CHUNK = 1000
#: Warm-up pushes before a timed sequence of single pushes (connections, prepared statements).
WARMUP_PUSHES = 20
#: Jobs the enqueue→start pusher sends, and waits for, before the timed ones.
WARMUP_JOBS = 3
#: Entrypoint / queue name used by both systems.
NAME = "compare"

_PAD = "x" * 32


def payload(i: int) -> dict[str, Any]:
    """The job's args: a small JSON object, the same for every system."""
    return {"n": i, "pad": _PAD}


def encode(obj: Any) -> bytes:
    """Compact JSON, byte for byte what trioqueue's default ``JsonCodec`` stores."""
    return json.dumps(obj, separators=(",", ":")).encode()


def chunks(n: int) -> list[list[dict[str, Any]]]:
    """``n`` payloads in lists of ``CHUNK``, built before any clock starts."""
    return [[payload(i) for i in range(s, min(s + CHUNK, n))] for s in range(0, n, CHUNK)]


def parse_args(figures: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("figure", choices=figures)
    p.add_argument("--url", required=True)
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--pause", type=float, default=0.02)
    p.add_argument("--out", default=None)
    return p.parse_args()


def report(**fields: Any) -> None:
    """Print the child's result line."""
    print(json.dumps(fields), flush=True)


def single_push_result(n: int, total: float, calls: list[float]) -> None:
    report(jobs=n, per_s=n / total, p50_ms=statistics.median(calls) * 1e3)


# -- the enqueue→start file: one "n t_push t_start" line per job, written by the worker --


def latency_line(n: int, t_push: float, t_start: float) -> str:
    return f"{n} {t_push!r} {t_start!r}\n"


def latency_lines(path: str) -> int:
    """How many jobs the worker has recorded so far."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def read_latencies(path: str) -> list[float]:
    """Seconds from push to handler start of every timed (non warm-up) job."""
    out = []
    with open(path) as f:
        for line in f:
            n, t_push, t_start = line.split()
            if int(n) >= 0:
                out.append(float(t_start) - float(t_push))
    return out
