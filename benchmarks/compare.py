"""Compare trioqueue with pgqueuer on the same PostgreSQL server, and both with raw SQL.

Usage: ``python benchmarks/compare.py [--rounds N] [--quick] [--server URL]``
(``make bench-compare`` runs it from its own virtualenv, ``.venv-bench``, which holds
pgqueuer and asyncpg; neither is a dependency of trioqueue).

Figures, the same for each system, every one in a fresh process on a fresh
database (or SQLite file) that is dropped afterwards:

1. ``push_single``: 1,000 single pushes, awaited one after the other: pushes/s and
   the median call.
2. ``push_bulk``: 20,000 jobs pushed in calls of 1,000.
3. ``end_to_end``: 20,000 no-op jobs already stored; one worker, from its start to
   the last job done, at concurrency 10 and 100.
4. ``enqueue_to_start``: 200 jobs pushed one at a time, 20 ms apart, to an idle
   worker in another process; handler start minus push time (``time.time()``).
5. trioqueue on SQLite for 1-4, and the raw-SQL floor (``_compare_floor.py``):
   on a plain table, and the same statements on trioqueue's own table.
   ``push_single`` also for the blocking and the asyncio clients (``_compare_clients.py``),
   on PostgreSQL (next to pgqueuer's enqueue, an asyncio client too) and SQLite.
6. trioqueue end to end on the memory backend (100,000 tasks), and the bare
   channel-and-nursery loop it is held against.

Rounds are interleaved: trioqueue, pgqueuer, floors; the next round starts with
pgqueuer. Progress goes to stderr; stdout gets one JSON line per figure (median,
min and max over the rounds) and then a table of ratios, each the median of the
per-round ratios, so that a slow moment of the shared machine hits both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from _compare_protocol import read_latencies
from _compare_report import print_figures, print_ratios
from psycopg import sql

HERE = Path(__file__).resolve().parent
CHILD = {
    "trioqueue": HERE / "_compare_trioqueue.py",
    "pgqueuer": HERE / "_compare_pgqueuer.py",
    "floor": HERE / "_compare_floor.py",
    "clients": HERE / "_compare_clients.py",
}
ATTEMPTS = 3  # a failing child is retried (trioqueue may be mid-edit), then skipped
RETRY_PAUSE = 15.0
CHILD_TIMEOUT = 600.0


@dataclass(frozen=True)
class Sizes:
    single: int = 1000
    bulk: int = 20_000
    e2e: int = 20_000
    latency: int = 200
    pause: float = 0.02
    memory: int = 100_000


QUICK = Sizes(single=200, bulk=4000, e2e=4000, latency=50, memory=20_000)


@dataclass(frozen=True)
class Figure:
    """One measurement taken once per round: which child, on what, with what."""

    key: str
    system: str
    backend: str
    child_args: tuple[str, ...]
    fields: dict[str, Any] = field(default_factory=dict)


def _fig(system: str, backend: str, name: str, *args: Any, **fields: Any) -> Figure:
    return Figure(f"{system}/{backend}/{name}", system, backend, tuple(map(str, args)), fields)


def plan(s: Sizes) -> dict[str, list[Figure]]:
    """The figures of one round, by group, in the order they run."""
    tq: list[Figure] = []
    for be in ("postgresql", "sqlite"):
        tq.append(_fig("trioqueue", be, "push_single", "single", "--jobs", s.single))
        tq.append(_fig("trioqueue", be, "push_bulk", "bulk", "--jobs", s.bulk))
        for c in (10, 100):
            tq.append(
                _fig("trioqueue", be, f"end_to_end_c{c}", "e2e", "--jobs", s.e2e,
                     "--concurrency", c, concurrency=c)
            )  # fmt: skip
    for be in ("postgresql", "sqlite"):
        tq.append(
            _fig("trioqueue", be, "enqueue_to_start", "latency", "--jobs", s.latency,
                 "--pause", s.pause, pause_s=s.pause)
        )  # fmt: skip
    for c in (10, 100):
        tq.append(
            _fig("trioqueue", "memory", f"end_to_end_c{c}", "e2e", "--jobs", s.memory,
                 "--concurrency", c, concurrency=c)
        )  # fmt: skip

    # The blocking and asyncio clients (trioqueue.sync, trioqueue.asyncio), outside Trio.
    for be in ("postgresql", "sqlite"):
        for kind in ("sync", "asyncio"):
            tq.append(
                _fig("clients", be, f"push_single_{kind}", f"single-{kind}", "--jobs", s.single)
            )

    pq = [
        _fig("pgqueuer", "postgresql", "push_single", "single", "--jobs", s.single),
        _fig("pgqueuer", "postgresql", "push_bulk", "bulk", "--jobs", s.bulk),
    ]
    for c in (10, 100):
        pq.append(
            _fig("pgqueuer", "postgresql", f"end_to_end_c{c}", "e2e", "--jobs", s.e2e,
                 "--concurrency", c, concurrency=c, concurrency_limit=c, batch_size=50)
        )  # fmt: skip
    pq.append(
        _fig("pgqueuer", "postgresql", "enqueue_to_start", "latency", "--jobs", s.latency,
             "--pause", s.pause, pause_s=s.pause)
    )  # fmt: skip
    # concurrency_limit is fleet-wide and counts a finished job until its log buffer
    # flushes (0.1 s, or 50 jobs); the per-worker cap is max_concurrent_tasks, which
    # must be at least twice the batch size.
    for c in (10, 100):
        pq.append(
            _fig("pgqueuer", "postgresql", f"end_to_end_c{c}_worker_cap", "e2e-cap",
                 "--jobs", s.e2e, "--concurrency", c, concurrency=c, max_concurrent_tasks=c,
                 batch_size=min(50, c // 2))
        )  # fmt: skip

    fl: list[Figure] = [
        _fig("floor", "memory", f"bare_loop_c{c}", "bare", "--jobs", s.memory,
             "--concurrency", c, concurrency=c)
        for c in (10, 100)
    ]  # fmt: skip
    for be, batches in (("postgresql", (10, 100)), ("sqlite", (100,))):
        fl.append(_fig("floor", be, "insert_single", "single", "--jobs", s.single))
        fl.append(_fig("floor", be, "insert_bulk", "bulk", "--jobs", s.bulk))
        for k in batches:
            fl.append(
                _fig("floor", be, f"claim_complete_b{k}", "claim", "--jobs", s.e2e,
                     "--batch", k, batch=k)
            )  # fmt: skip
    # The same work on trioqueue's own SQLite table: what its indexes cost the database.
    fl.append(_fig("floor", "sqlite", "schema_insert_bulk", "schema-bulk", "--jobs", s.bulk))
    fl.append(
        _fig("floor", "sqlite", "schema_claim_complete_b100", "schema-claim", "--jobs", s.e2e,
             "--batch", 100, batch=100)
    )  # fmt: skip
    return {"trioqueue": tq, "pgqueuer": pq, "floor": fl}


# -- where each measurement runs --


@contextmanager
def fresh_target(server: str, backend: str) -> Iterator[str]:
    """A new PostgreSQL database or SQLite file for one measurement, removed after."""
    if backend == "memory":
        yield "memory://"
        return
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="trioqueue-compare-")
        try:
            yield f"sqlite:///{folder}/jobs.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    name = f"trioqueue_compare_{secrets.token_hex(4)}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def child(system: str, *args: str) -> list[str]:
    return [sys.executable, str(CHILD[system]), *args]


def last_json(out: str) -> dict[str, Any]:
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError("the child printed no result")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_child(cmd: list[str]) -> dict[str, Any]:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {p.stderr.strip()[-1500:]}")
    return last_json(p.stdout)


def wait_ready(proc: subprocess.Popen[str], timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == "ready":
                return
            if not line:
                break
    raise RuntimeError("the worker never said it was ready")


def run_latency(system: str, url: str, args: tuple[str, ...]) -> dict[str, Any]:
    """Start the idle worker process, push from another, read the worker's file."""
    jobs = args[args.index("--jobs") + 1]
    rest = list(args[1:])
    with tempfile.TemporaryDirectory(prefix="trioqueue-compare-") as folder:
        out = os.path.join(folder, "starts.txt")
        worker = subprocess.Popen(
            child(system, "latency-worker", "--url", url, "--jobs", jobs, "--out", out),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_ready(worker, 60)
            pushed = run_child(child(system, "latency-push", "--url", url, *rest, "--out", out))
            worker.wait(timeout=60)
            if worker.returncode != 0:
                assert worker.stderr is not None
                raise RuntimeError(
                    f"worker exit {worker.returncode}: {worker.stderr.read()[-1500:]}"
                )
            lat = sorted(read_latencies(out))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    if len(lat) != int(jobs):
        raise RuntimeError(f"the worker recorded {len(lat)} of {jobs} jobs")
    return {
        "jobs": len(lat),
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] * 1e3,
        "push_p50_ms": pushed["push_p50_ms"],
    }


def measure(server: str, fig: Figure) -> dict[str, Any] | None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with fresh_target(server, fig.backend) as url:
                if fig.child_args[0] == "latency":
                    return run_latency(fig.system, url, fig.child_args)
                return run_child(child(fig.system, *fig.child_args, "--url", url))
        except (RuntimeError, subprocess.TimeoutExpired, psycopg.Error) as exc:
            log(f"  {fig.key}: attempt {attempt} failed: {exc}")
            if attempt < ATTEMPTS:
                time.sleep(RETRY_PAUSE)
    return None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def setup_line(server: str, rounds: int, sizes: Sizes) -> dict[str, Any]:
    with psycopg.connect(f"{server}/postgres") as c:
        row = c.execute("SHOW server_version").fetchone()
    versions = {p: metadata.version(p) for p in ("trioqueue", "pgqueuer", "asyncpg", "psycopg")}
    try:
        versions["uvloop"] = metadata.version("uvloop")
    except metadata.PackageNotFoundError:
        pass
    return {
        "setup": "compare",
        "rounds": rounds,
        "sizes": sizes.__dict__,
        "postgresql": row[0] if row else None,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="fewer jobs per figure")
    p.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    p.add_argument(
        "--only", default="", help="run only the figures whose key contains one of these (comma)"
    )
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error("--rounds must be >= 1")
    server = a.server.rstrip("/")
    sizes = QUICK if a.quick else Sizes()
    groups = plan(sizes)
    if a.only:
        wanted = [w for w in a.only.split(",") if w]
        groups = {
            g: [f for f in figs if any(w in f.key for w in wanted)] for g, figs in groups.items()
        }
    t_start = time.monotonic()
    print(json.dumps(setup_line(server, a.rounds, sizes)), flush=True)
    results: dict[str, list[dict[str, Any] | None]] = {}
    figures: dict[str, Figure] = {}
    for r in range(a.rounds):
        order = (
            ["trioqueue", "pgqueuer", "floor"] if r % 2 == 0 else ["pgqueuer", "trioqueue", "floor"]
        )
        log(f"round {r + 1}/{a.rounds}: {', '.join(order)}")
        for g in order:
            for fig in groups[g]:
                t0 = time.monotonic()
                res = measure(server, fig)
                figures[fig.key] = fig
                results.setdefault(fig.key, []).append(res)
                log(f"  {fig.key}: {json.dumps(res)} ({time.monotonic() - t0:.1f}s)")
    print_figures(print, figures, results)
    print_ratios(print, results)
    print(json.dumps({"elapsed_s": round(time.monotonic() - t_start, 1)}))


if __name__ == "__main__":
    main()
