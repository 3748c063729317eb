"""``--backend``: found in the backend table, so a registered backend needs no other edit."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import toy_driver
import trio
from cli.cli_project import Cli

import trioqueue as tq
from trioqueue.drivers import BackendSpec, register_backend, unregister_backend


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["status", "--backend", "redis://localhost"], 3,
         "unknown backend URL 'redis://localhost': use memory://, "),
        (["status", "--backend", "redis://app:s3cret@localhost"], 3,
         "unknown backend URL 'redis://app:***@localhost'"),
        (["status", "--backend", "no-scheme"], 3, "unknown backend URL 'no-scheme'"),
        (["tasks", "--backend", "sqlite:///no-such-dir/q.db", "--wait", "0"], 7,
         "no trioqueue store at 'sqlite:///no-such-dir/q.db' yet"),
        (["push", "jobs:send", '{"to": "x"}', "--backend", "sqlite:///no-such-dir/q.db",
          "--wait", "0"], 3, "cannot open backend 'sqlite:///no-such-dir/q.db'"),
        (["status", "--backend", "postgresql://postgres:pw@127.0.0.1:1/nowhere", "--wait", "0"], 3,
         "cannot open backend 'postgresql://postgres:***@127.0.0.1:1/nowhere'"),
        (["status", "--schema", "jobs"], 2, "--schema applies to postgresql backends only"),
        (["migrate", "--backend", "memory://", "--schema", "jobs"], 2,
         "--schema applies to postgresql backends only"),
    ],
)  # fmt: skip
def test_backend_errors(cli: Cli, argv: list[str], code: int, message: str) -> None:
    lines = cli(*argv, code=code).err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trioqueue: error: "), lines
    assert message in lines[0]
    assert "s3cret" not in lines[0] and ":pw@" not in lines[0]
    assert not (cli.root / "no-such-dir").exists()


@dataclasses.dataclass
class Toy:
    """The toy backend's row, and what its migration was asked."""

    spec: BackendSpec
    migrations: list[tuple[str, dict[str, Any]]]


@pytest.fixture
def toy() -> Iterator[Toy]:
    """The file-backed toy driver, registered under ``toyfile://`` for one test."""
    migrations: list[tuple[str, dict[str, Any]]] = []

    async def migrate(url: str, **options: Any) -> int:
        migrations.append((url, options))
        return 7

    spec = BackendSpec(
        name="toy",
        schemes=("toyfile",),
        open=toy_driver.open_file_backend,
        example="toyfile:///path/to/store.json",
        transient=(OSError,),
        migrate=migrate,
        schema_version=7,
    )
    register_backend(spec)
    try:
        yield Toy(spec, migrations)
    finally:
        unregister_backend("toyfile")


def test_a_registered_backend_is_reached_by_open_backend_and_the_cli(
    cli: Cli, toy: Toy, tmp_path: Path
) -> None:
    url = f"toyfile://{tmp_path}/store.json"

    async def push() -> list[tq.TaskId]:
        async with tq.open_backend(url, queue="toys") as backend:
            return [await backend.push(n) for n in range(3)]

    ids = trio.run(push)
    assert (tmp_path / "store.json").exists()  # the toy driver's own file
    assert cli.json("status", "--backend", url) == {
        "toys": {"pending": 3, "queued": 0, "running": 0, "done": 0, "failed": 0,
                 "killed": 0, "cancelled": 0},
    }  # fmt: skip
    assert cli.json("show", ids[1], "--backend", url)["args"] == 1

    assert cli("migrate", "--backend", url).out == "toy schema up to date at version 7\n"
    assert toy.migrations == [(url, {})]
    # The row has no "schema" option, and the table words the refusal.
    err = cli("migrate", "--backend", url, "--schema", "s", code=2).err
    assert err == "trioqueue: error: --schema applies to postgresql backends only\n"
    assert toy.migrations == [(url, {})]
    # Unknown schemes are answered with the examples of every row, the toy's too.
    assert "toyfile:///path/to/store.json" in cli("status", "--backend", "nope:", code=3).err

    register_backend(dataclasses.replace(toy.spec, migrate=None), replace=True)
    assert cli("migrate", "--backend", url).out == "toy backend: nothing to migrate\n"
    register_backend(dataclasses.replace(toy.spec, options=frozenset({"schema"})), replace=True)
    cli("migrate", "--backend", url, "--schema", "s")
    assert toy.migrations[-1] == (url, {"schema": "s"})
    err = cli("status", "--backend", "memory://", "--schema", "s", code=2).err
    assert err == "trioqueue: error: --schema applies to postgresql or toy backends only\n"

    unregister_backend("toyfile")
    err = cli("status", "--backend", url, code=3).err
    assert err.startswith(f"trioqueue: error: unknown backend URL {url!r}")


TOY_JOBS = """
import toy_driver

from trioqueue.drivers import BackendSpec, register_backend

register_backend(BackendSpec(
    name="toy", schemes=("toyfile",), open=toy_driver.open_file_backend, example="toyfile:///x",
))


async def double(n: int) -> int:
    return 2 * n
"""


def test_a_handler_module_may_register_the_backend_it_uses(cli: Cli, tmp_path: Path) -> None:
    (cli.root / "toyjobs.py").write_text(TOY_JOBS)
    url = f"toyfile://{tmp_path}/store.json"
    try:
        task_id = cli.push("toyjobs:double", "21", "--backend", url)
        assert (
            "done 1, failed 0, killed 0"
            in cli("worker", "toyjobs:double", "--burst", "--backend", url).err
        )
        assert cli.json("show", task_id, "--backend", url)["result"] == 42
    finally:
        unregister_backend("toyfile")
        sys.modules.pop("toyjobs", None)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("host=127.0.0.1 password=s3cret-Pa55", 3),
        ("postgresql//app:s3cret-Pa55@db/jobs", 3),
        ("sqlite://app:s3cret-Pa55@host/q.db", 2),
        ("postgresql://postgres:s3cret-Pa55@127.0.0.1:5432/no_such_database_here", 3),
        ("host=127.0.0.1 dbname=no_such_database_here password=s3cret-Pa55", 3),
    ],
)
def test_no_command_prints_a_password(cli: Cli, url: str, code: int) -> None:
    for argv in (["status"], ["migrate"], ["worker", "jobs:send", "--burst"]):
        # A short --wait: the retries' log lines are checked too.
        err = cli(*argv, "--backend", url, "--log-level", "debug", "--wait", "0.3", code=code).err
        assert "trioqueue: error:" in err and "s3cret-Pa55" not in err, err
