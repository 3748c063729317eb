"""The recipes' tests' stores (a SQLite file, a PostgreSQL database) and a Trio worker process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import pg_url, store_url_fixture  # noqa: F401  (the fixtures)

CHILD = Path(__file__).parent.parent / "clients" / "worker_child.py"


@pytest.fixture
def worker_process(store_url: str) -> Iterator[subprocess.Popen[str]]:
    """A Trio worker process on queue ``jobs`` that doubles ``{"n": k}``, claiming."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), store_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
