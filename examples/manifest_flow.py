"""A workflow end to end: list files, hash them in parallel, write a manifest in the join.

Run it with::

    python examples/manifest_flow.py [--files 50] [--dir manifest-data]

It writes a few files into a fresh temporary folder (or ``--dir``), starts a
run of ``flow`` in ``sqlite:///<folder>/flows.db`` with the library, runs
``trioqueue worker manifest_flow:flow --burst`` (the command line runs a flow
like any handler), then checks the manifest the run wrote. The steps:

1. ``list_files``: the run's args are a folder; it returns the paths of its
   files, sorted.
2. ``hash_file``, a ``map`` over that list: one task per file, run in
   parallel, each retried on its own.
3. ``write_manifest``, the join: it gets every file's hash in the list's
   order, created once by the last hash's transition, and writes
   ``MANIFEST.json`` beside the files. Its return value is the run's result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

import trioqueue
from trioqueue import Workflow

HERE = Path(__file__).resolve().parent


@dataclass
class FileHash:
    """One file's name, size and SHA-256."""

    name: str
    size: int
    sha256: str


async def list_files(folder: str) -> list[str]:
    """Return the paths of the regular files in ``folder``, sorted (no manifest)."""
    names = sorted(await trio.Path(folder).iterdir())
    return [str(p) for p in names if await p.is_file() and p.name != "MANIFEST.json"]


async def hash_file(path: str) -> FileHash:
    """Read one file and hash it."""
    data = await trio.Path(path).read_bytes()
    return FileHash(Path(path).name, len(data), hashlib.sha256(data).hexdigest())


async def write_manifest(hashes: list[FileHash], task: trioqueue.Task[list[FileHash]]) -> str:
    """Write ``MANIFEST.json`` (the hashes, in the listed order) and return its path."""
    run = task.meta["trioqueue_run"]
    folder = Path(task.meta["folder"])
    manifest = {
        "run": run,
        "files": [asdict(h) for h in hashes],
        "total_bytes": sum(h.size for h in hashes),
    }
    path = folder / "MANIFEST.json"
    await trio.Path(path).write_text(json.dumps(manifest, indent=2) + "\n")
    return str(path)


#: The queue the runs' nodes go to (a flow's nodes go to the queue of the
#: backend that pushed the run; the worker command is told the same one).
QUEUE = "manifests"

#: The workflow; ``trioqueue worker manifest_flow:flow`` runs its nodes.
flow = Workflow("manifest").then(list_files).map(hash_file).then(write_manifest)


def make_files(folder: Path, count: int) -> None:
    """Write ``count`` files of 1 to 64 KiB of random bytes into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(13)
    for i in range(count):
        (folder / f"part-{i:03d}.bin").write_bytes(rng.randbytes(rng.randint(1024, 65536)))


async def start(url: str, folder: Path) -> str:
    """Push a run of ``flow`` over ``folder``; return its id."""
    async with trioqueue.open_backend(url, queue=QUEUE) as backend:
        return await flow.push(backend, str(folder), meta={"folder": str(folder)})


async def check(url: str, run_id: str, folder: Path) -> bool:
    """Print the run's result and check the manifest against the files."""
    async with trioqueue.open_backend(url, queue=QUEUE) as backend:
        with trio.fail_after(30):
            path = await backend.wait_result(run_id)
        run = await flow.get_run(backend, run_id)
    manifest = json.loads(await trio.Path(path).read_text())
    ok = manifest["run"] == run_id
    for entry in manifest["files"]:
        data = await (trio.Path(folder) / entry["name"]).read_bytes()
        ok = ok and entry["sha256"] == hashlib.sha256(data).hexdigest()
    files = sorted(p.name for p in await trio.Path(folder).iterdir() if p.name != "MANIFEST.json")
    ok = ok and [e["name"] for e in manifest["files"]] == files
    print(f"run {run_id}: {run.status.value}, {len(run.nodes)} node tasks")
    print(f"manifest {path}: {len(files)} files, {manifest['total_bytes']} bytes")
    print("ok" if ok else "MISMATCH")
    return ok


def run(folder: Path, files: int) -> int:
    db = folder / "flows.db"
    for leftover in (db, db.with_name("flows.db-wal"), db.with_name("flows.db-shm")):
        leftover.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    data = folder / "data"
    make_files(data, files)
    run_id = trio.run(start, url, data)
    print(f"pushed run {run_id} of flow {flow.name!r} to {url}")
    argv = [
        sys.executable, "-m", "trioqueue", "worker", "manifest_flow:flow",
        "--backend", url, "--queue", QUEUE, "--burst", "--concurrency", "8",
    ]  # fmt: skip
    print("$ trioqueue " + " ".join(argv[3:]), flush=True)
    code = subprocess.run(argv, cwd=HERE, check=False).returncode
    if code != 0:
        print(f"the worker exited with status {code}", file=sys.stderr)
        return code
    return 0 if trio.run(check, url, run_id, data) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=50, help="how many files (50)")
    parser.add_argument("--dir", type=Path, help="keep the files and database in this folder")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.dir is not None:
        return run(args.dir.resolve(), args.files)
    folder = Path(tempfile.mkdtemp(prefix="trioqueue-flow-"))
    try:
        return run(folder, args.files)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.pop("TRIOQUEUE_BACKEND", None)
    sys.exit(main())
