"""Fixtures of the command-line tests: a project folder, and the CLI run in process there."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.cli_project import HANDLERS, Cli

#: The modules a project folder holds (imported afresh by each test).
MODULES = ("jobs", "broken")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with ``jobs.py`` and ``broken.py``, made the current directory.

    ``TRIOQUEUE_BACKEND`` is ``sqlite:///q.db`` there. What ``main`` changes in
    the process (the import path, imported modules, the root logger) is put
    back afterwards.
    """
    (tmp_path / "jobs.py").write_text(HANDLERS)
    (tmp_path / "broken.py").write_text("raise RuntimeError('config missing')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRIOQUEUE_BACKEND", "sqlite:///q.db")
    monkeypatch.setattr(sys, "path", list(sys.path))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for name in MODULES:
        sys.modules.pop(name, None)
    try:
        yield tmp_path
    finally:
        for name in MODULES:
            sys.modules.pop(name, None)
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture
def cli(project: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(project, capsys)
