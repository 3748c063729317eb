"""The docs hold: links resolve, public names have docstrings, examples run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.seconds
def test_docs_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, str(DOCS / "check.py")], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "examples:" in done.stdout and " 0 broken" in done.stdout
