"""The README's first example and shell session run as written, in a temporary folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_check", ROOT / "docs" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_session_is_found() -> None:
    app, steps = _check().readme_session((ROOT / "README.md").read_text(encoding="utf-8"))
    assert "def configure_worker(builder: WorkerBuilder)" in app
    commands = [cmd for cmd, _ in steps]
    assert commands[0] == "python app.py"
    assert any(c.startswith("trioqueue push app:send_email ") for c in commands)
    assert "trioqueue worker app:send_email --burst" in commands
    assert not any(c.startswith(("pip", "make")) for c in commands)


@pytest.mark.seconds
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    assert _check().run_readme(tmp_path) == []
    assert (tmp_path / "trioqueue.db").exists()  # the CLI's default store, shared with app.py


@pytest.mark.seconds
def test_a_wrong_line_in_the_readme_is_caught(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    wrong = text.replace("done 1, failed 0, killed 0 in …", "done 2, failed 0, killed 0 in …")
    assert wrong != text
    problems = _check().run_readme(tmp_path, wrong)
    assert len(problems) == 1 and "did not print 'done 2, failed 0" in problems[0]
