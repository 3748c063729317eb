"""Fixtures of the command-line tests: a project folder, and the CLI run in process there."""

from __future__ import annotations

import logging
import os
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


#: A handler module that registers the toy file backend, for a worker in a child process.
TOY_JOBS = """
import toy_driver

from trioqueue.drivers import BackendSpec, register_backend

register_backend(BackendSpec(
    name="toy", schemes=("toyfile",), open=toy_driver.open_file_backend, example="toyfile:///x",
), replace=True)

from jobs import *  # noqa: E402,F403
"""


@pytest.fixture(params=["sqlite", "toy"])
def store(
    request: pytest.FixtureRequest, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A store that persists between commands: a SQLite file, or the toy file driver.

    It is made ``TRIOQUEUE_BACKEND``; the fixture's value is the handler
    module a worker uses with it (``toyjobs`` registers the toy backend).
    """
    if request.param == "sqlite":
        yield "jobs"
        return
    import toy_driver

    from trioqueue.drivers import BackendSpec, register_backend, unregister_backend

    (project / "toyjobs.py").write_text(TOY_JOBS)
    tests = str(Path(toy_driver.__file__).parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("TRIOQUEUE_BACKEND", f"toyfile://{project}/store.json")
    register_backend(
        BackendSpec(
            name="toy", schemes=("toyfile",), open=toy_driver.open_file_backend, example="x"
        )
    )
    try:
        yield "toyjobs"
    finally:
        unregister_backend("toyfile")
        sys.modules.pop("toyjobs", None)
