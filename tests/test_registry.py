"""The backend table: registering, lookup by scheme, entry points, safe messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import trioqueue as tq
from trioqueue.drivers import (
    BackendSpec,
    backend_spec,
    redact_url,
    register_backend,
    registered_schemes,
    unregister_backend,
)

MODULE = """
from contextlib import asynccontextmanager

from trioqueue import MemoryBackend
from trioqueue.drivers import BackendSpec


@asynccontextmanager
async def open_it(url, **options):
    async with MemoryBackend.open(**options) as backend:
        backend.opened_from = url
        yield backend


SPEC = BackendSpec(name="epmem", schemes=("epmem",), open=open_it, example="epmem://")
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution on the path that names a backend under the entry-point group."""
    (tmp_path / "tq_ep_backend.py").write_text(MODULE)
    info = tmp_path / "tq_ep_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tq-ep-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[trioqueue.backends]\nepmem = tq_ep_backend:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    unregister_backend("epmem")


async def test_a_backend_named_by_an_entry_point_is_found_without_an_import(
    installed_plugin: None,
) -> None:
    assert "epmem" not in registered_schemes()
    spec = backend_spec("epmem://here")
    assert spec.name == "epmem" and "epmem" in registered_schemes()
    async with tq.open_backend("epmem://here") as backend:
        assert backend.opened_from == "epmem://here"  # type: ignore[attr-defined]
        assert await backend.push(1)


def test_built_in_schemes_are_registered_and_load_on_first_use() -> None:
    assert {"memory", "sqlite", "postgresql", "postgres"} <= set(registered_schemes())
    assert backend_spec("SQLite:///x.db").name == "sqlite"  # schemes are case-insensitive
    assert (
        backend_spec("postgres://db").schema_version
        == backend_spec("postgresql://db").schema_version
    )


def test_an_unknown_url_names_the_known_schemes_and_hides_its_password() -> None:
    with pytest.raises(ValueError) as info:
        backend_spec("redis://app:s3cret@localhost/0")
    message = str(info.value)
    assert "s3cret" not in message and "app:***@localhost" in message
    assert "sqlite://" in message and "memory://" in message
    with pytest.raises(TypeError):
        backend_spec(b"memory://")  # type: ignore[arg-type]


def test_registering_refuses_taken_and_malformed_schemes() -> None:
    memory = backend_spec("memory://")
    with pytest.raises(ValueError, match="taken"):
        register_backend(BackendSpec(name="m", schemes=("memory",), open=memory.open, example="m"))
    for bad in ("", "Upper", "with space", "a/b"):
        with pytest.raises(ValueError):
            register_backend(BackendSpec(name="x", schemes=(bad,), open=memory.open, example="x"))
    with pytest.raises(TypeError):
        register_backend(memory.open)  # type: ignore[arg-type]


def test_a_replaced_built_in_goes_back_to_its_own_row_when_unregistered() -> None:
    memory = backend_spec("memory://")
    mine = BackendSpec(name="mine", schemes=("memory",), open=memory.open, example="memory://")
    register_backend(mine, replace=True)
    try:
        assert backend_spec("memory://") is mine
    finally:
        unregister_backend("memory")
    assert backend_spec("memory://").name == "memory"


SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SECRET}@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        (f"postgresql://app@db/jobs?password={SECRET}&sslmode=require",
         "postgresql://app@db/jobs?password=***&sslmode=require"),
        (f"postgresql://app@db/jobs?sslpassword={SECRET}", "postgresql://app@db/jobs?sslpassword=***"),
        (f"host=db password={SECRET} user=app", "host=db password=*** user=app"),
        (f"host=db password = '{SECRET} x' user=app", "host=db password = *** user=app"),
        (f"postgresq://app:{SECRET}@db/jobs", "postgresq://app:***@db/jobs"),
        (f"postgresql//app:{SECRET}@db/jobs", "postgresql//app:***@db/jobs"),
        (f"app:{SECRET}@db/jobs", "app:***@db/jobs"),
        (f"postgresql://app:{SECRET}@[::1/jobs", "postgresql://app:***@[::1/jobs"),
        ("postgresql://app@db/jobs", "postgresql://app@db/jobs"),
        ("sqlite:///data/q.db?busy_timeout=5", "sqlite:///data/q.db?busy_timeout=5"),
    ],
)  # fmt: skip
def test_redact_url_hides_every_form_of_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        f"host=127.0.0.1 password={SECRET}",
        f"postgresq://app:{SECRET}@db/jobs",
        f"postgresql//app:{SECRET}@db/jobs",
        f"sqlite://app:{SECRET}@host/q.db",
        f"postgresql://postgres:{SECRET}@127.0.0.1:5432/no_such_database_here",
        f"postgresql://postgres@127.0.0.1:5432/no_such_database_here?password={SECRET}",
        f"host=127.0.0.1 port=5432 dbname=no_such_database_here password={SECRET}",
        f"postgresql://postgres:{SECRET}@127.0.0.1:notaport/jobs",
        f"postgresql://postgres@127.0.0.1/jobs?password={SECRET}&nonsense=1",
    ],
)
async def test_no_error_of_open_backend_shows_the_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(Exception) as info:
        async with tq.open_backend(url):
            pass  # pragma: no cover - never opened
    shown = "".join(
        f"{type(e).__name__}: {e} {e!r}"
        for e in (info.value, info.value.__cause__, info.value.__context__)
        if isinstance(e, tq.TrioqueueError | ValueError) or e is info.value
    )
    assert SECRET not in shown and SECRET not in caplog.text
