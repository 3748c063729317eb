"""A Trio worker process for the clients' tests: ``python worker_child.py URL``.

Its handler doubles ``{"n": k}``, aborts ``{"fail": reason}`` and, for
``{"block": true}``, prints ``started ID`` and waits until cancelled. It
prints ``ready`` once it claims.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

import trioqueue as tq


async def handler(args: dict[str, Any], task_id: tq.TaskId) -> int:
    if "fail" in args:
        raise tq.Abort(args["fail"])
    if args.get("block"):
        print(f"started {task_id}", flush=True)
        await trio.sleep_forever()
    return int(args["n"]) * 2


async def main(url: str) -> None:
    async with tq.open_backend(url, queue="jobs") as backend:
        worker = tq.WorkerBuilder("child").backend(backend).concurrency(4).lease(3).build(handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.serve)
            print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
