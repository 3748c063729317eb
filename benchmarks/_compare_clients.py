"""One figure of ``compare.py`` for trioqueue's clients outside Trio: single pushes.

Usage: ``python benchmarks/_compare_clients.py single-sync|single-asyncio --url URL --jobs N``
with URL a ``postgresql://`` or ``sqlite:///`` URL. The same protocol as
``_compare_trioqueue.py``'s ``single``: warm-up pushes, then N pushes awaited
(or called) one after the other; pushes/s and the median call.
"""

from __future__ import annotations

import asyncio
import sys
import time

from _compare_protocol import NAME, WARMUP_PUSHES, parse_args, payload, single_push_result

from trioqueue.asyncio import open_client
from trioqueue.sync import Client


def single_sync(url: str, n: int) -> None:
    with Client(url, queue=NAME) as client:
        for i in range(WARMUP_PUSHES):
            client.push(payload(-1 - i))
        calls = []
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            client.push(payload(i))
            calls.append(time.perf_counter() - s)
        total = time.perf_counter() - t0
    single_push_result(n, total, calls)


async def single_asyncio(url: str, n: int) -> None:
    async with open_client(url, queue=NAME) as client:
        for i in range(WARMUP_PUSHES):
            await client.push(payload(-1 - i))
        calls = []
        t0 = time.perf_counter()
        for i in range(n):
            s = time.perf_counter()
            await client.push(payload(i))
            calls.append(time.perf_counter() - s)
        total = time.perf_counter() - t0
    single_push_result(n, total, calls)


def main() -> None:
    a = parse_args(["single-sync", "single-asyncio"])
    if a.figure == "single-sync":
        single_sync(a.url, a.jobs)
    else:
        asyncio.run(single_asyncio(a.url, a.jobs))


if __name__ == "__main__":
    sys.exit(main())
