"""A child process for the cross-process lifecycle tests.

``python lifecycle_child.py URL wait ID``: wait for the task's result and
print it (or the exception's class name) as one JSON line.
``python lifecycle_child.py URL watch ID``: print one JSON line per snapshot.
``python lifecycle_child.py URL worker LEASE [CONCURRENCY]``: run a worker
whose handler reports progress, prints ``started ID`` and waits until cancelled.
"""

from __future__ import annotations

import json
import sys

import trio

import trioqueue as tq


async def wait(url: str, id: str) -> None:
    async with tq.open_backend(url) as b:
        print("ready", flush=True)
        try:
            result = await b.wait_result(id)
        except (tq.TaskFailed, tq.TaskCancelled) as exc:
            print(json.dumps({"error": type(exc).__name__}), flush=True)
        else:
            print(json.dumps({"result": result}), flush=True)


async def watch(url: str, id: str) -> None:
    async with tq.open_backend(url) as b:
        print("ready", flush=True)
        async for task in b.watch(id):
            print(json.dumps({"status": task.status.value, "progress": task.progress}), flush=True)


async def worker(url: str, lease: float, concurrency: int) -> None:
    async def handler(n: int, task_id: tq.TaskId, progress: tq.Progress) -> int:
        progress.set({"step": 1})
        print(f"started {task_id}", flush=True)
        await trio.sleep_forever()
        return n

    async with tq.open_backend(url) as b:
        builder = tq.WorkerBuilder("child").backend(b).lease(lease)
        if concurrency:
            builder = builder.concurrency(concurrency).prefetch(concurrency)
        w = builder.build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            print("ready", flush=True)


def main() -> None:
    url, what, arg, *more = sys.argv[1:]
    if what == "wait":
        trio.run(wait, url, arg)
    elif what == "watch":
        trio.run(watch, url, arg)
    else:
        trio.run(worker, url, float(arg), int(more[0]) if more else 0)


if __name__ == "__main__":
    main()
