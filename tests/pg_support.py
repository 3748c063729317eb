"""PostgreSQL test support: a fresh database per test module on the real server.

Other test files parametrize backends with it::

    from pg_support import pg_url  # noqa: F401  (the fixture)

The server is ``TRIOQUEUE_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``).
When it is unreachable, tests that need it FAIL under ``CI=true`` and are
skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

__all__ = ["FakeClock", "fresh_database", "pg_server", "pg_url", "random_name", "require_server"]

SERVER = os.environ.get("TRIOQUEUE_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def pg_server() -> str:
    """Return the server URL (no database part)."""
    return SERVER.rstrip("/")


def random_name(prefix: str) -> str:
    """Return ``prefix`` plus a random lower-case suffix (a valid identifier)."""
    return f"{prefix}_{secrets.token_hex(5)}"


def require_server() -> None:
    """Fail (``CI=true``) or skip loudly when the PostgreSQL server is unreachable."""
    try:
        with psycopg.connect(f"{pg_server()}/postgres", connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        reason = f"PostgreSQL server unreachable at {pg_server()}: {first}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(f"POSTGRESQL TESTS NOT RUN: {reason} (set CI=true to make this fail)")


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create a database with a random name, yield its URL, then drop it."""
    require_server()
    name = random_name("trioqueue_test")
    admin = f"{pg_server()}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{pg_server()}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A URL to a fresh database, shared by one test module and dropped after it."""
    with fresh_database() as url:
        yield url


@contextmanager
def store_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty store of ``kind``: a SQLite file, or a fresh database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/tasks.db"
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture(
    name="store_url",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty store: a new SQLite file, or a fresh schema in the module's database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/tasks.db"
    url: str = request.getfixturevalue("pg_url")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS trioqueue CASCADE")
    return url


class FakeClock:
    """A clock for drivers that moves only when told: ``clock.advance(seconds)``."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds
