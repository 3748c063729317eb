"""Memory backend throughput: push_bulk rate and end-to-end task throughput.

Prints one JSON line per figure:

- ``push_bulk``: tasks/s acknowledged by ``push_bulk`` of 100,000 ints.
- ``end_to_end``: 100,000 no-op tasks already pushed, from the worker's start
  to the last outcome settled (claim, prefetch channel, decode, service,
  batched settle), at concurrency 10 and 100.
- ``push_and_run``: the same, counting the push too (producer and worker
  share the one core Trio runs on).
- ``bare_loop``: a channel-and-nursery loop with no library around it, the
  ceiling to compare with.

Run: ``make bench`` or ``python benchmarks/bench_memory.py [--profile]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import trio

import trioqueue as tq

N = 100_000
ROUNDS = 3


async def noop(n: int) -> None:
    return None


async def one_round(concurrency: int) -> dict[str, float]:
    async with tq.MemoryBackend.open() as backend:
        t0 = time.perf_counter()
        await backend.push_bulk(range(N))
        t1 = time.perf_counter()
        worker = tq.WorkerBuilder("bench").backend(backend).concurrency(concurrency).build(noop)
        await worker.run(burst=True)
        t2 = time.perf_counter()
        assert worker.statistics().done == N, worker.statistics()
    return {"push": N / (t1 - t0), "run": N / (t2 - t1), "both": N / (t2 - t0)}


async def bare_loop(concurrency: int, n: int = N) -> float:
    """Items through a bounded channel into `concurrency` consumer tasks, nothing else.

    Returns items per second (``_compare_floor.py`` reuses it as the memory floor).
    """
    send, recv = trio.open_memory_channel[int](concurrency)
    t0 = time.perf_counter()

    async def consumer() -> None:
        async for item in recv:
            await noop(item)

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(consumer)
        async with send:
            for i in range(n):
                await send.send(i)
    return n / (time.perf_counter() - t0)


def line(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def main() -> None:
    for concurrency in (10, 100):
        # Interleaved: the library, then the bare loop, in each round, so that a
        # slow moment of a shared machine hits both; the ratio is per round.
        rounds, bares = [], []
        for _ in range(ROUNDS):
            rounds.append(await one_round(concurrency))
            bares.append(await bare_loop(concurrency))
        best = {k: max(r[k] for r in rounds) for k in rounds[0]}
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        if concurrency == 10:
            line(bench="memory.push_bulk", tasks=N, tasks_per_s=round(best["push"]),
                 median=round(med["push"]))  # fmt: skip
        line(bench="memory.end_to_end", tasks=N, concurrency=concurrency,
             tasks_per_s=round(best["run"]), median=round(med["run"]))  # fmt: skip
        line(bench="memory.push_and_run", tasks=N, concurrency=concurrency,
             tasks_per_s=round(best["both"]), median=round(med["both"]))  # fmt: skip
        line(bench="bare_loop", tasks=N, concurrency=concurrency,
             tasks_per_s=round(max(bares)), median=round(statistics.median(bares)))  # fmt: skip
        ratio = statistics.median(r["run"] / b for r, b in zip(rounds, bares, strict=True))
        line(bench="memory.end_to_end/bare_loop", concurrency=concurrency, ratio=round(ratio, 3))


if __name__ == "__main__":
    if "--profile" in sys.argv:
        from pyinstrument import Profiler

        with Profiler() as p:
            trio.run(one_round, 100)
        p.print()
    else:
        trio.run(main)
