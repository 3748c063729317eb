"""The PostgreSQL schema of trioqueue: validated names, migrating a store, columns.

Every statement is composed with ``psycopg.sql`` from a schema name that
passed ``check_identifier``; values always travel as parameters. The column
lists come from ``StoredTask``'s fields (``_columns.py``); the migrations'
SQL is in ``_pg_migrations.py``.
"""

from __future__ import annotations

import logging
import re

import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .._errors import BackendError
from .._registry import redact_url
from ._columns import TEXT_COLUMNS
from ._pg_migrations import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "check_identifier",
    "migrate_connection",
    "reach",
    "row_to_task",
]

log = logging.getLogger("trioqueue.backends.postgres")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


#: The table's columns and how each differs from the record's field (``meta``
#: travels as JSON text both ways: read as ``meta::text``, it is decoded row
#: by row, so one that does not decode fails its row alone).
COLUMNS = TEXT_COLUMNS
row_to_task = COLUMNS.record


def check_identifier(name: object, what: str = "schema") -> str:
    """Return ``name`` if it is a plain SQL identifier (letters, digits, ``_``; at most 63).

    Raises:
      TypeError: if it is not a ``str``.
      ValueError: if it is not a plain identifier.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}")
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} must be letters, digits and '_' (not starting with a digit, "
            f"at most 63 characters), got {name[:70]!r}"
        )
    return name


def _version(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    """Return the version of ``schema``'s tables; refuse one newer than this code knows."""
    row = conn.execute(
        sql.SQL("SELECT max(version) FROM {s}.schema_version").format(s=sql.Identifier(schema))
    ).fetchone()
    version = 0 if row is None or row[0] is None else int(str(row[0]))
    if version > SCHEMA_VERSION:
        raise psycopg.errors.FeatureNotSupported(
            f"schema {schema} is at version {version}, newer than this trioqueue "
            f"knows ({SCHEMA_VERSION}): upgrade trioqueue"
        )
    return version


def migrate_connection(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> int:
    """Apply the missing migrations on ``conn`` (sync, autocommit off) and return the version.

    One transaction under ``pg_advisory_xact_lock``, so concurrent openers
    wait for each other and each migration runs once.
    """
    s = sql.Identifier(check_identifier(schema))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"trioqueue:{schema}",))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {s}").format(s=s))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL)"
            ).format(s=s)
        )
        version = _version(conn, schema)
        for n, body in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("applying migration %d to schema %s", n, schema)
            conn.execute(sql.SQL(body).format(s=s))
            conn.execute(
                sql.SQL("INSERT INTO {s}.schema_version (version) VALUES (%s)").format(s=s), (n,)
            )
            version = n
    return version


def _where(url: str) -> str:
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "the given URL"
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return f"{host}:{info.get('port') or 5432}"


def _connect_error(url: str, exc: BaseException) -> BackendError:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), repr(exc))
    return BackendError(f"cannot connect to PostgreSQL at {_where(url)}: {first}")


async def reach(url: str, schema: str, *, migrate: bool, connect_timeout: float) -> int:
    """Connect once (in a worker thread) and, with ``migrate``, bring ``schema`` up to date.

    Without ``migrate`` the schema's version is read and must be this code's:
    a missing, older or newer schema is refused before anything else runs.

    Returns:
      The schema version in place.

    Raises:
      BackendError: if the server cannot be reached (a one-line message),
        the migration failed, or (without ``migrate``) the schema is missing
        or at another version; psycopg's error is the cause.
      ValueError: for a schema name that is not a plain identifier, or is
        one of PostgreSQL's own (``pg_catalog``, ``information_schema``,
        any ``pg_*``).
    """
    timeout = max(1, round(connect_timeout))
    check_identifier(schema)
    if schema.lower().startswith("pg_") or schema.lower() == "information_schema":
        raise ValueError(
            f"schema {schema!r} is PostgreSQL's own: choose another name for trioqueue's "
            f"tables (the default is 'trioqueue')"
        )

    def check(conn: psycopg.Connection[tuple[object, ...]]) -> int:
        found = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".schema_version',)
        ).fetchone()
        if found is None or not found[0]:
            raise psycopg.errors.UndefinedTable(
                f"schema {schema} has no trioqueue tables: run `trioqueue migrate` "
                f"or open with migrate=True"
            )
        version = _version(conn, schema)
        if version < SCHEMA_VERSION:
            raise psycopg.errors.FeatureNotSupported(
                f"schema {schema} is at version {version}, older than this trioqueue "
                f"needs ({SCHEMA_VERSION}): run `trioqueue migrate` or open with migrate=True"
            )
        return version

    def run() -> int:
        if not migrate:
            with psycopg.connect(url, autocommit=True, connect_timeout=timeout) as conn:
                return check(conn)
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            return migrate_connection(conn, schema)

    try:
        return await trio.to_thread.run_sync(run)
    except psycopg.OperationalError as exc:
        raise BackendError(redact_url(str(_connect_error(url, exc)))) from exc
    except psycopg.Error as exc:
        what = "migrate" if migrate else "use"
        raise BackendError(
            redact_url(f"cannot {what} PostgreSQL schema {schema!r}: {exc}")
        ) from exc
