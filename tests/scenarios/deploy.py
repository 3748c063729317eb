"""A small real deployment for scenario tests: worker processes, the CLI and the API on one store.

``Deployment`` starts ``trioqueue worker`` processes (and programs embedding
a worker) in a folder holding the handler module ``app.py`` (a copy of
``scenario_app.py``), runs admin commands through the installed command
line, talks to the store through the public API, and ends every process it
started (by its PID) when its block ends, whatever happened.

Across processes there is no event to wait on: ``wait_until`` polls the
store with a bounded deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import trio

import trioqueue as tq
from trioqueue import Status

APP = Path(__file__).with_name("scenario_app.py")
SCRIPT = Path(sys.executable).with_name("trioqueue")
CLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "trioqueue"]


class Timeout(AssertionError):
    """A condition a scenario waited for did not come true within its deadline."""


@dataclass(frozen=True, slots=True)
class CliRun:
    """One command-line run: its arguments, exit status and output."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str
    took: float

    @property
    def ok(self) -> bool:
        return self.code == 0 and "Traceback" not in self.err


@dataclass(frozen=True, slots=True)
class Completion:
    """A ledger line: an attempt of a task whose handler completed, in process ``pid``."""

    task_id: str
    attempt: int
    pid: int


@dataclass
class Proc:
    """A process of the deployment."""

    name: str
    argv: list[str]
    process: trio.Process
    log: Path
    signals: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None


class Deployment:
    """Worker processes, the command line and the API around one store (``url``), in ``home``.

    Use ``open_deployment``; its block ends every process still running.
    """

    def __init__(self, home: Path, url: str, backends: dict[str, tq.Backend]) -> None:
        self.home = home
        self.url = url
        #: The API's view of the store (the first queue's backend).
        self.backend = next(iter(backends.values()))
        self._backends = backends
        self.procs: list[Proc] = []
        #: Every command-line run, in order.
        self.commands: list[CliRun] = []
        #: Pids of the processes ended by SIGKILL.
        self.killed: set[int] = set()
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(home), *sys.path]),
            "PYTHONUNBUFFERED": "1",
            "SCENARIO_HOME": str(home),
            "TRIOQUEUE_BACKEND": url,
        }

    # -- processes -----------------------------------------------------------

    async def start(self, name: str, argv: list[str]) -> Proc:
        """Start ``argv`` in the deployment's folder; its output goes to ``<name>.log``."""
        log = self.home / f"{name}.log"
        with log.open("ab") as out:
            process = await trio.lowlevel.open_process(
                argv, cwd=self.home, env=self.env, stdout=out, stderr=out
            )
        proc = Proc(name, argv, process, log)
        self.procs.append(proc)
        return proc

    async def worker(self, name: str, *handlers: str, options: Iterable[str] = ()) -> Proc:
        """Start ``trioqueue worker app:h1 app:h2 ...`` with ``options``."""
        argv = [*CLI, "worker", *(f"app:{h}" for h in handlers), *options]
        return await self.start(name, argv)

    async def program(self, name: str, call: str) -> Proc:
        """Start ``python -c`` running ``trio.run(app.<call>, url)``."""
        code = f"import trio, app; trio.run(app.{call}, {self.url!r})"
        return await self.start(name, [sys.executable, "-c", code])

    async def restart(self, proc: Proc) -> Proc:
        """Start ``proc``'s command again (``proc`` must have ended)."""
        assert not proc.running, f"{proc.name} still runs"
        return await self.start(proc.name, proc.argv)

    async def wait_serving(self, proc: Proc, queues: Iterable[str], *, limit: float = 30) -> None:
        """Wait until ``proc`` is registered as a worker of each of ``queues``."""
        want = set(queues)

        async def registered() -> bool:
            assert proc.running, f"{proc.name} exited: {tail(proc.log)}"
            return want <= {w.queue for w in await self.backend.workers() if w.pid == proc.pid}

        await self.wait_until(f"{proc.name} serves {sorted(want)}", registered, limit=limit)

    def kill(self, proc: Proc) -> None:
        """SIGKILL ``proc``."""
        self.killed.add(proc.pid)
        proc.signals.append("SIGKILL")
        proc.process.kill()

    def send(self, proc: Proc, signum: signal.Signals) -> None:
        """Send ``signum`` to ``proc``."""
        proc.signals.append(signum.name)
        proc.process.send_signal(signum)

    async def exited(self, proc: Proc, *, limit: float = 30) -> int:
        """Wait until ``proc`` has exited; return its exit status."""
        with trio.move_on_after(limit):
            return await proc.process.wait()
        raise Timeout(f"{proc.name} did not exit in {limit}s: {tail(proc.log)}")

    async def wait_log(self, proc: Proc, text: str, *, limit: float = 30) -> None:
        """Wait until ``proc`` has written ``text`` to its log."""

        async def written() -> bool:
            return text in proc.log.read_text(errors="replace")

        await self.wait_until(f"{proc.name} logs {text!r}", written, limit=limit)

    async def _end_all(self) -> None:
        with trio.CancelScope(shield=True):
            for proc in self.procs:
                if proc.running:
                    proc.process.kill()
            for proc in self.procs:
                await proc.process.wait()

    # -- the command line and the API ------------------------------------------

    async def cli(self, *args: str, limit: float = 60) -> CliRun:
        """Run ``trioqueue ARGS`` to its end and record it (a failure is recorded, not raised)."""
        start = time.monotonic()
        with trio.fail_after(limit):
            done = await trio.run_process(
                [*CLI, *args],
                cwd=self.home,
                env=self.env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        out, err = done.stdout.decode(), done.stderr.decode()
        run = CliRun(tuple(args), done.returncode, out, err, time.monotonic() - start)
        self.commands.append(run)
        return run

    async def cli_all(self, *commands: tuple[str, ...]) -> None:
        """Run these commands at once (recorded, as ``cli``)."""
        async with trio.open_nursery() as nursery:
            for args in commands:
                nursery.start_soon(self.cli, *args)

    def on_queue(self, queue: str) -> tq.Backend:
        """The API's backend whose queue is ``queue`` (one of ``open_deployment``'s)."""
        return self._backends[queue]

    async def tasks(self, queue: str | None = None) -> dict[str, tq.Task[Any]]:
        """Every task of the store (or of ``queue``), by id."""
        found: dict[str, tq.Task[Any]] = {}
        before: str | None = None
        while True:
            page = await self.backend.list_tasks(queue=queue, limit=500, before=before)
            found.update((str(t.id), t) for t in page)
            if len(page) < 500:
                return found
            before = str(page[-1].id)

    async def statuses(self, ids: Iterable[str]) -> dict[str, Status | None]:
        """The status of each task (None: not in the store)."""
        result: dict[str, Status | None] = {}
        for id in ids:
            task = await self.backend.get_task(id)
            result[id] = None if task is None else task.status
        return result

    def ledger(self) -> list[Completion]:
        """The completed attempts, in the order they were written."""
        path = self.home / "ledger"
        if not path.exists():
            return []
        lines = (line.split() for line in path.read_text().splitlines())
        return [Completion(id, int(attempt), int(pid)) for id, attempt, pid in lines]

    def age(self, ids: Iterable[str], seconds: float) -> None:
        """Move the ``finished_at`` of these (finished) tasks ``seconds`` into the past.

        The test's own SQL: the public surface has no way to make time pass.
        """
        ids = list(ids)
        if self.url.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30) as conn:
                conn.executemany(
                    "UPDATE trioqueue_tasks SET finished_at = finished_at - ? WHERE id = ?",
                    [(seconds, id) for id in ids],
                )
        else:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(
                    "UPDATE trioqueue.tasks SET finished_at = finished_at - %s WHERE id = ANY(%s)",
                    (seconds, ids),
                )

    # -- waiting ---------------------------------------------------------------

    async def wait_until(
        self, what: str, ready: Callable[[], Awaitable[bool]], *, limit: float
    ) -> float:
        """Poll ``ready`` until it is true; return the seconds it took.

        Raises:
          Timeout: naming ``what`` if ``limit`` seconds passed first.
        """
        start = time.monotonic()
        with trio.move_on_after(limit):
            while not await ready():  # noqa: ASYNC110 - no event crosses the process boundary
                await trio.sleep(0.05)
            return time.monotonic() - start
        raise Timeout(f"waited {limit}s for: {what}")

    async def within(self, ready: Callable[[], Awaitable[bool]], *, limit: float) -> float | None:
        """Poll ``ready`` for at most ``limit`` seconds; the seconds it took, or None."""
        try:
            return await self.wait_until("", ready, limit=limit)
        except Timeout:
            return None

    async def wait_final(self, ids: Iterable[str], *, limit: float) -> None:
        """Wait until each of these tasks is final (or gone)."""
        left = set(ids)

        async def done() -> bool:
            for id, status in (await self.statuses(sorted(left))).items():
                if status is None or status.is_final:
                    left.discard(id)
            return not left

        await self.wait_until(f"{len(left)} task(s) final", done, limit=limit)


@asynccontextmanager
async def open_deployment(home: Path, url: str, queues: Iterable[str]) -> AsyncIterator[Deployment]:
    """Prepare ``home`` (``app.py``) and yield a ``Deployment`` on ``url``.

    The API gets a backend on each of ``queues`` (the first is
    ``Deployment.backend``). Every process the deployment started is
    SIGKILLed (by PID) when the block ends, also on failure.
    """
    await trio.Path(home).mkdir(parents=True, exist_ok=True)
    await trio.to_thread.run_sync(shutil.copy, APP, home / "app.py")
    async with AsyncExitStack() as exits:
        backends = {
            queue: await exits.enter_async_context(
                tq.open_backend(url, queue=queue, retention=None)
            )
            for queue in queues
        }
        deployment = Deployment(home, url, backends)
        try:
            yield deployment
        finally:
            await deployment._end_all()


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file, for a failure message."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""
