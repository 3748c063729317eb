"""The command line run in process: the ``jobs.py`` of a project folder, and ``main`` called on it.

The fixtures that make the folder and the ``Cli`` are in ``conftest.py`` here.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trioqueue._cli import main

HANDLERS = textwrap.dedent(
    """
    from __future__ import annotations

    import pathlib
    import urllib.request
    from dataclasses import dataclass

    import trio

    from trioqueue import Abort, Data, Progress, ServiceBuilder, WorkerContext


    @dataclass
    class Email:
        to: str
        subject: str = "hello"


    async def send(args: Email) -> dict[str, str]:
        if args.to == "abort":
            raise Abort("no such mailbox")
        if args.to == "boom":
            raise RuntimeError("smtp down")
        if args.to == "flaky" and not pathlib.Path("fixed").exists():
            raise Abort("not fixed yet")
        return {"sent": args.to, "subject": args.subject}


    stack = ServiceBuilder().service(send)


    async def needs_state(args: Email, state: Data[dict]) -> None:
        pass


    async def slow(n: int, ctx: WorkerContext) -> str:
        print(f"started {n}", flush=True)
        with trio.move_on_after(20):
            while not ctx.is_shutting_down:
                await trio.sleep(0.01)
        return "finished after shutdown" if ctx.is_shutting_down else "never stopped"


    async def report(n: int, progress: Progress) -> int:
        progress.set({"done": n, "of": n})
        return n


    async def stuck(n: int) -> None:
        print(f"started {n}", flush=True)
        await trio.sleep(60)


    async def scrape(url: str) -> list[str]:
        def get() -> str:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()

        text = await trio.to_thread.run_sync(get)
        return [line for line in text.splitlines() if line.startswith("trioqueue_")]


    def not_async(n: int) -> None:
        pass


    VALUE = 42
    """
)


@dataclass(frozen=True)
class Result:
    """What one command printed."""

    out: str
    err: str


class Cli:
    """Calls ``trioqueue._cli.main`` in process and checks its exit status."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> Result:
        try:
            status: Any = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            status = exc.code
        out, err = self.capsys.readouterr()
        assert status == code, (status, out, err)
        assert "Traceback" not in err, err
        return Result(out, err)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").out)

    def push(self, *args: str) -> str:
        return self("push", *args).out.strip()

    def status(self, *args: str) -> dict[str, int]:
        """The store's nonzero counts by status; {} when there is no store yet (status 7)."""
        try:
            code: Any = main(["status", "--json", *args])
        except SystemExit as exc:
            code = exc.code
        out, err = self.capsys.readouterr()
        if code == 7 and "no trioqueue store" in err:
            return {}
        assert code == 0, (code, out, err)
        counts: dict[str, dict[str, int]] = json.loads(out)
        total: dict[str, int] = {}
        for by_status in counts.values():  # added up over the queues
            for s, n in by_status.items():
                if n:
                    total[s] = total.get(s, 0) + n
        return total
