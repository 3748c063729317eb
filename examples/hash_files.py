"""Hash a few thousand files with trioqueue: push one task per file, then run a burst worker.

Run it with ``make demo`` or::

    python examples/hash_files.py [--files 3000] [--concurrency 16] [--dir demo-data]

It writes small random files into a fresh temporary folder (or ``--dir``),
pushes one task per file into ``sqlite:///<folder>/demo.db`` with the library,
runs ``trioqueue worker hash_files:sha256_file --burst`` (the command line,
with its live progress line on a terminal), then reads a few results back and
checks them. The temporary folder is deleted at the end; a ``--dir`` folder is
kept and reused (its database is emptied first).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

import trioqueue

HERE = Path(__file__).resolve().parent
#: The handler's own queue: ``trioqueue worker hash_files:sha256_file`` consumes it.
QUEUE = "hash_files:sha256_file"


async def sha256_file(path: str) -> dict[str, Any]:
    """The handler: hash one file and return its size and SHA-256."""
    data = await trio.Path(path).read_bytes()
    return {"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def make_files(folder: Path, count: int) -> list[Path]:
    """Write ``count`` files of 1 to 8 KiB of random bytes into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    paths = []
    for i in range(count):
        path = folder / f"file-{i:05d}.bin"
        path.write_bytes(rng.randbytes(rng.randint(1024, 8192)))
        paths.append(path)
    return paths


async def push_all(url: str, paths: list[Path]) -> None:
    """Push one task per file (the file's path) in one bulk push."""
    async with trioqueue.open_backend(url, queue=QUEUE) as backend:
        await backend.push_bulk([str(p) for p in paths])


async def report(url: str) -> bool:
    """Print the counts and a few results; return whether every task is done and correct."""
    async with trioqueue.open_backend(url, queue=QUEUE) as backend:
        counts = (await backend.counts()).get(QUEUE, {})
        done = await backend.list_tasks(status=trioqueue.Status.DONE, limit=3)
    shown = ", ".join(f"{s.value} {n}" for s, n in sorted(counts.items()) if n)
    print(f"storage: {shown}")
    ok = bool(done) and set(counts) == {trioqueue.Status.DONE}
    for task in done:
        result = task.result
        data = await trio.Path(result["path"]).read_bytes()
        expected = hashlib.sha256(data).hexdigest()
        mark = "ok" if result["sha256"] == expected else "MISMATCH"
        ok = ok and mark == "ok"
        print(f"  {Path(result['path']).name}  {result['size']:5d} B  {result['sha256']}  {mark}")
    return ok


def run(folder: Path, files: int, concurrency: int) -> int:
    db = folder / "demo.db"
    for leftover in (db, db.with_name("demo.db-wal"), db.with_name("demo.db-shm")):
        leftover.unlink(missing_ok=True)
    url = f"sqlite:///{db}"

    t0 = time.monotonic()
    paths = make_files(folder / "data", files)
    print(f"wrote {len(paths)} files in {folder / 'data'} ({time.monotonic() - t0:.2f}s)")

    t0 = time.monotonic()
    trio.run(push_all, url, paths)
    print(f"pushed {len(paths)} tasks to {url} ({time.monotonic() - t0:.2f}s)")

    argv = [
        sys.executable, "-m", "trioqueue", "worker", "hash_files:sha256_file",
        "--backend", url, "--burst", "--concurrency", str(concurrency),
    ]  # fmt: skip
    print("$ trioqueue " + " ".join(argv[3:]), flush=True)
    code = subprocess.run(argv, cwd=HERE, check=False).returncode
    if code != 0:
        print(f"the worker exited with status {code}", file=sys.stderr)
        return code
    return 0 if trio.run(report, url) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3000, help="how many files (3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="worker concurrency (16)")
    parser.add_argument("--dir", type=Path, help="keep the files and database in this folder")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.dir is not None:
        return run(args.dir.resolve(), args.files, args.concurrency)
    folder = Path(tempfile.mkdtemp(prefix="trioqueue-demo-"))
    try:
        return run(folder, args.files, args.concurrency)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.pop("TRIOQUEUE_BACKEND", None)
    sys.exit(main())
