"""The clients' tests' stores (a SQLite file, a PostgreSQL database) and a worker process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import pg_url  # noqa: F401  (the fixture)

CHILD = Path(__file__).with_name("worker_child.py")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store: a new SQLite file, or a fresh schema in the module's database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tasks.db"
    url: str = request.getfixturevalue("pg_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS trioqueue CASCADE")
    return url


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
