"""The PostgreSQL schema of trioqueue: validated names, versioned migrations, statements.

Every statement is composed with ``psycopg.sql`` from a schema name that
passed ``check_identifier``; values always travel as parameters. The column
lists come from ``StoredTask``'s fields (``_columns.py``).
"""

from __future__ import annotations

import logging
import operator
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from .._driver import StoredTask
from .._errors import BackendError
from .._registry import redact_url
from .._task import Status
from ._columns import FIELDS, Columns, nullable

__all__ = [
    "COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Statements",
    "check_identifier",
    "migrate_connection",
    "reach",
    "row_to_task",
]

log = logging.getLogger("trioqueue.backends.postgres")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: The migrations, in order; the schema's version is how many were applied.
#: ``{s}`` is the schema (an ``sql.Identifier``). Never edit one that shipped:
#: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS {s}.tasks (
        id text COLLATE "C" PRIMARY KEY,
        queue text COLLATE "C" NOT NULL,
        payload bytea NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN
            ('pending', 'queued', 'running', 'done', 'failed', 'killed', 'cancelled')),
        attempts integer NOT NULL DEFAULT 0,
        max_attempts integer NOT NULL DEFAULT 25,
        run_at double precision NOT NULL,
        priority bigint NOT NULL DEFAULT 0,
        meta jsonb NOT NULL DEFAULT '{{}}',
        last_error text,
        result bytea,
        created_at double precision NOT NULL,
        finished_at double precision,
        lease_token text,
        lease_expires_at double precision
    );
    CREATE INDEX IF NOT EXISTS tasks_ready ON {s}.tasks (queue, priority DESC, run_at, id)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX IF NOT EXISTS tasks_schedule ON {s}.tasks (queue, run_at)
        WHERE status IN ('pending', 'failed');
    CREATE INDEX IF NOT EXISTS tasks_leases ON {s}.tasks (lease_expires_at)
        WHERE status IN ('queued', 'running');
    CREATE INDEX IF NOT EXISTS tasks_finished ON {s}.tasks (finished_at)
        WHERE status IN ('done', 'killed', 'cancelled');
    """,
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)


def _encode_meta(meta: dict[str, Any]) -> str:
    return msgspec.json.encode(meta).decode()


#: The table's columns and how each differs from the record's field (``meta``
#: travels as JSON text and comes back decoded from jsonb by psycopg).
COLUMNS = Columns(
    to_db={"status": operator.attrgetter("value"), "meta": _encode_meta},
    from_db={"payload": bytes, "status": Status, "result": nullable(bytes)},
)
row_to_task = COLUMNS.record

#: The PostgreSQL type a Python field type travels as (in the insert's arrays).
_PG_TYPES: dict[type, str] = {
    str: "text",
    bytes: "bytea",
    int: "bigint",
    float: "float8",
    Status: "text",
    dict: "text",
}
#: The columns whose array values are cast on the way into the table.
_CASTS = {"meta": "jsonb"}


def _pg_type(hint: Any) -> str:
    if isinstance(hint, types.UnionType):  # X | None
        (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
    return _PG_TYPES[typing.get_origin(hint) or hint]


_HINTS = typing.get_type_hints(StoredTask)
#: ``unnest(%(id)s::text[], ...)``: one array parameter per column.
#: The columns an insert writes: a new record has no outcome and no lease yet,
#: so those columns keep the table's defaults (NULL), and the statement sends
#: five arrays fewer.
INSERTED = tuple(
    n
    for n in FIELDS
    if n not in ("last_error", "result", "finished_at", "lease_token", "lease_expires_at")
)
_ARRAYS = ", ".join(f"%({name})s::{_pg_type(_HINTS[name])}[]" for name in INSERTED)
_VALUES = ", ".join(f"{n}::{_CASTS[n]}" if n in _CASTS else n for n in INSERTED)


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
        row = conn.execute(
            sql.SQL("SELECT max(version) FROM {s}.schema_version").format(s=s)
        ).fetchone()
        version = 0 if row is None or row[0] is None else int(str(row[0]))
        if version > SCHEMA_VERSION:
            raise psycopg.errors.FeatureNotSupported(
                f"schema {schema} is at version {version}, newer than this trioqueue "
                f"knows ({SCHEMA_VERSION}): upgrade trioqueue"
            )
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
    s = sql.Identifier(check_identifier(schema))
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
        row = conn.execute(
            sql.SQL("SELECT max(version) FROM {s}.schema_version").format(s=s)
        ).fetchone()
        version = 0 if row is None or row[0] is None else int(str(row[0]))
        if version > SCHEMA_VERSION:
            raise psycopg.errors.FeatureNotSupported(
                f"schema {schema} is at version {version}, newer than this trioqueue "
                f"knows ({SCHEMA_VERSION}): upgrade trioqueue"
            )
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


class Statements:
    """The driver's statements, composed once for one schema and wake-up channel."""

    def __init__(self, schema: str) -> None:
        s = sql.Identifier(check_identifier(schema))
        #: The NOTIFY channel; the payload is a queue name, never task data.
        self.channel = f"trioqueue.{schema}"
        cols = sql.SQL(COLUMNS.select)
        tcols = sql.SQL(", ".join(f"t.{c}" for c in COLUMNS.names))
        arrays, values = sql.SQL(_ARRAYS), sql.SQL(_VALUES)
        icols = sql.SQL(", ".join(INSERTED))

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(
                s=s, cols=cols, tcols=tcols, icols=icols, arrays=arrays, values=values
            )

        # Each statement is one round trip and its own transaction (autocommit),
        # so a cancelled or failed call never leaves a transaction open.
        # Params: ``insert_params(tasks)``.
        self.insert = q(
            """WITH ins AS (
                INSERT INTO {s}.tasks ({icols})
                SELECT {values} FROM unnest({arrays}) AS x({icols})
                ON CONFLICT (id) DO NOTHING
                RETURNING queue),
            n AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM ins) d)
            SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)"""
        )
        self.claim = q(
            """WITH c AS (
                SELECT id FROM {s}.tasks
                WHERE queue = %(queue)s AND status IN ('pending', 'failed') AND run_at <= %(now)s
                ORDER BY priority DESC, run_at, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED)
            UPDATE {s}.tasks t
            SET status = 'queued', attempts = t.attempts + 1,
                lease_token = %(token)s, lease_expires_at = %(expires)s
            FROM c WHERE t.id = c.id
            RETURNING {tcols}"""
        )
        # Lock the held rows in id order first: concurrent batches of one
        # consumer (settler and extender) then never deadlock each other.
        held = """SELECT id FROM {s}.tasks
                WHERE id = ANY(%(ids)s::text[]) AND lease_token = %(token)s
                  AND status IN ('queued', 'running')
                ORDER BY id FOR UPDATE"""
        self.start = q(
            "WITH h AS (" + held + ") UPDATE {s}.tasks t SET status = 'running' "
            "FROM h WHERE t.id = h.id AND t.status = 'queued'"
        )
        self.extend = q(
            "WITH h AS (" + held + ") UPDATE {s}.tasks t SET lease_expires_at = %(expires)s "
            "FROM h WHERE t.id = h.id RETURNING t.id"
        )
        self.release = q(
            "WITH h AS ("
            + held
            + """),
            u AS (UPDATE {s}.tasks t
                SET status = 'pending', attempts = greatest(0, t.attempts - 1),
                    lease_token = NULL, lease_expires_at = NULL
                FROM h WHERE t.id = h.id RETURNING t.queue),
            n AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM u) d)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"""
        )
        self.settle = q(
            """WITH o AS (
                SELECT DISTINCT ON (id) * FROM unnest(%(ids)s::text[], %(statuses)s::text[],
                    %(results)s::bytea[], %(errors)s::text[], %(delays)s::float8[])
                    AS o(id, status, result, error, delay)),
            h AS (SELECT id FROM {s}.tasks
                WHERE id IN (SELECT id FROM o) AND lease_token = %(token)s
                  AND status IN ('queued', 'running')
                ORDER BY id FOR UPDATE),
            u AS (UPDATE {s}.tasks t SET
                status = CASE WHEN o.status = 'failed' AND t.attempts >= t.max_attempts
                              THEN 'killed' ELSE o.status END,
                result = CASE WHEN o.status = 'done' THEN o.result ELSE t.result END,
                last_error = CASE WHEN o.status = 'done' THEN t.last_error ELSE o.error END,
                run_at = CASE WHEN o.status = 'failed' AND t.attempts < t.max_attempts
                              THEN %(now)s + greatest(0.0, o.delay) ELSE t.run_at END,
                finished_at = CASE WHEN o.status = 'failed' AND t.attempts < t.max_attempts
                                   THEN t.finished_at ELSE %(now)s END,
                lease_token = NULL, lease_expires_at = NULL
                FROM o, h WHERE t.id = o.id AND t.id = h.id
                RETURNING t.id, t.queue, t.status),
            n AS (SELECT pg_notify(%(channel)s, q)
                  FROM (SELECT DISTINCT queue AS q FROM u WHERE status = 'failed') d)
            SELECT (SELECT array_agg(id) FROM u), (SELECT count(*) FROM n)"""
        )
        self.rescue = q(
            """WITH e AS (
                SELECT id FROM {s}.tasks
                WHERE status IN ('queued', 'running') AND lease_expires_at <= %(now)s
                  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
                ORDER BY id FOR UPDATE SKIP LOCKED),
            u AS (UPDATE {s}.tasks t SET
                status = CASE WHEN t.attempts >= t.max_attempts THEN 'killed' ELSE 'failed' END,
                last_error = CASE WHEN t.attempts >= t.max_attempts
                    THEN format('lease expired on attempt %%s of %%s', t.attempts, t.max_attempts)
                    ELSE format('lease expired on attempt %%s', t.attempts) END,
                run_at = CASE WHEN t.attempts >= t.max_attempts THEN t.run_at ELSE %(now)s END,
                finished_at = CASE WHEN t.attempts >= t.max_attempts
                                   THEN %(now)s ELSE t.finished_at END,
                lease_token = NULL, lease_expires_at = NULL
                FROM e WHERE t.id = e.id
                RETURNING t.queue, t.status),
            n AS (SELECT pg_notify(%(channel)s, q)
                  FROM (SELECT DISTINCT queue AS q FROM u WHERE status = 'failed') d)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"""
        )
        self.next_run_at = q(
            "SELECT min(run_at) FROM {s}.tasks "
            "WHERE queue = %(queue)s AND status IN ('pending', 'failed')"
        )
        self.counts = q(
            "SELECT queue, status, count(*) FROM {s}.tasks "
            "WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text) GROUP BY queue, status"
        )
        self.list_tasks = q(
            "SELECT {cols} FROM {s}.tasks "
            "WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text) "
            "AND (%(status)s::text IS NULL OR status = %(status)s::text) "
            "ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s"
        )
        self.get = q("SELECT {cols} FROM {s}.tasks WHERE id = %(id)s")
        self.retry = q(
            """WITH u AS (UPDATE {s}.tasks SET status = 'pending', run_at = %(now)s,
                finished_at = NULL, max_attempts = greatest(max_attempts, attempts + 1)
                WHERE id = %(id)s AND status IN ('failed', 'killed') RETURNING queue),
            n AS (SELECT pg_notify(%(channel)s, queue) FROM u)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"""
        )
        self.cancel = q(
            "UPDATE {s}.tasks SET status = 'cancelled', finished_at = %(now)s "
            "WHERE id = %(id)s AND status IN ('pending', 'failed') RETURNING id"
        )
        self.purge = q(
            "WITH d AS (DELETE FROM {s}.tasks WHERE status IN ('done', 'killed', 'cancelled') "
            "AND finished_at < %(before)s RETURNING 1) SELECT count(*) FROM d"
        )

    def insert_params(self, tasks: Sequence[StoredTask]) -> dict[str, Any]:
        """Return the parameters of ``insert`` for ``tasks``: one array per column."""
        params: dict[str, Any] = COLUMNS.arrays(tasks, INSERTED)
        params["channel"] = self.channel
        return params
