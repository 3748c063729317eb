"""Schedules on SQLite: three workers, one ``every(1)`` heartbeat, one task per tick.

Run ``python examples/schedule_heartbeat.py [--seconds N]``: three workers share
a SQLite file and the same schedule for N seconds (default 5), then the
script lists what was stored: one task per second, whichever worker pushed it,
and the schedule's record, as ``trioqueue schedules`` shows it. The workers
have other names but the schedule needs none: its default name comes from the
queue, the interval and the args, so they all run the same one.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import trio

import trioqueue as tq


async def beat(args: dict[str, str], tick: tq.Tick, ctx: tq.WorkerContext) -> str:
    """Say which worker ran which tick."""
    return f"{args['service']} alive at {tick:%H:%M:%S} (run by worker {ctx.name})"


async def main(seconds: float, folder: Path) -> None:
    url = f"sqlite:///{folder}/heartbeat.db"
    async with tq.open_backend(url) as backend:
        workers = [
            tq.WorkerBuilder(f"worker-{n}")
            .backend(backend)
            .every(1, args={"service": "api"})
            .build(beat)
            for n in range(3)
        ]
        async with trio.open_nursery() as nursery:
            for w in workers:
                await nursery.start(w.serve)
            await trio.sleep(seconds)
            for w in workers:
                w.stop()
        tasks = await backend.list_tasks(limit=1000)
        (record,) = await backend.driver.schedules()
    for task in sorted(tasks, key=lambda t: t.id):
        print(f"{task.id}  {task.status.value:<7} {task.result}")
    pushed = [w.statistics().schedules[0].pushed for w in workers]
    print(f"{len(tasks)} ticks stored; each worker pushed {pushed} (duplicates were skipped)")
    last = datetime.fromtimestamp(record.last_tick or 0, UTC)
    print(f"schedule {record.name!r}: every {record.interval:g}s, last tick {last:%H:%M:%S} UTC")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(main, options.seconds, Path(tmp))
