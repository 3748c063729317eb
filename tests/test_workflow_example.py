"""The workflow example runs end to end with ``trioqueue worker``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "manifest_flow.py"


@pytest.mark.seconds
def test_the_manifest_example_hashes_every_file_and_writes_the_manifest(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--files", "12", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "ok"
    assert any(line.endswith(": done, 14 node tasks") for line in lines), out.stdout
    manifest = (tmp_path / "data" / "MANIFEST.json").read_text()
    assert manifest.count('"sha256"') == 12
