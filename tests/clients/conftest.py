"""The clients' tests' stores (a SQLite file, a PostgreSQL database) and a worker process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import pg_url, store_url_fixture  # noqa: F401  (the fixtures)

CHILD = Path(__file__).with_name("worker_child.py")


class Child:
    """A worker process (``worker_child.py``) on queue ``jobs``; lines read as they come."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), url],
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        assert text, f"the worker process ended (status {self.proc.poll()})"
        return text.strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def worker_process(store_url: str) -> Iterator[Child]:
    """A Trio worker process on the store, claiming (it made the schema)."""
    child = Child(store_url)
    try:
        assert child.line() == "ready"
        yield child
    finally:
        child.stop()
