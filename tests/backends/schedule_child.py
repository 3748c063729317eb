"""A child process for the cross-process schedule tests.

``python schedule_child.py URL``: run a worker with the schedule ``every(1)``
named ``tick``; print ``ready`` once it serves, then ``ran ID`` for each task
it runs.
"""

from __future__ import annotations

import sys

import trio

import trioqueue as tq


async def main(url: str) -> None:
    async def handler(args: None, task_id: tq.TaskId) -> None:
        print(f"ran {task_id}", flush=True)

    async with tq.open_backend(url) as b:
        w = (
            tq.WorkerBuilder("ticker")
            .backend(b)
            .lease(2)
            .poll_interval(0.2)
            .every(1, name="tick")
            .build(handler)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(w.serve)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
