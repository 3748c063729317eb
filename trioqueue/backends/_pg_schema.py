"""The PostgreSQL schema of trioqueue: validated names, versioned migrations, statements.

Every statement is composed with ``psycopg.sql`` from a schema name that
passed ``check_identifier``; values always travel as parameters.
"""

from __future__ import annotations

import logging
import re

import psycopg
from psycopg import sql

__all__ = ["MIGRATIONS", "Statements", "check_identifier", "migrate_connection"]

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
        if version > len(MIGRATIONS):
            raise psycopg.errors.FeatureNotSupported(
                f"schema {schema} is at version {version}, newer than this trioqueue "
                f"knows ({len(MIGRATIONS)}): upgrade trioqueue"
            )
        for n, body in enumerate(MIGRATIONS[version:], start=version + 1):
            log.info("applying migration %d to schema %s", n, schema)
            conn.execute(sql.SQL(body).format(s=s))
            conn.execute(
                sql.SQL("INSERT INTO {s}.schema_version (version) VALUES (%s)").format(s=s), (n,)
            )
            version = n
    return version


_COLUMNS = (
    "id, queue, payload, status, attempts, max_attempts, run_at, priority, meta, "
    "last_error, result, created_at, finished_at, lease_token, lease_expires_at"
)


class Statements:
    """The driver's statements, composed once for one schema and wake-up channel."""

    def __init__(self, schema: str) -> None:
        s = sql.Identifier(check_identifier(schema))
        #: The NOTIFY channel; the payload is a queue name, never task data.
        self.channel = f"trioqueue.{schema}"
        cols = sql.SQL(_COLUMNS)
        tcols = sql.SQL(", ".join(f"t.{c}" for c in _COLUMNS.split(", ")))

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(s=s, cols=cols, tcols=tcols)

        # Each statement is one round trip and its own transaction (autocommit),
        # so a cancelled or failed call never leaves a transaction open.
        self.insert = q(
            """WITH ins AS (
                INSERT INTO {s}.tasks (id, queue, payload, status, attempts, max_attempts,
                                       run_at, priority, meta, created_at)
                SELECT id, queue, payload, 'pending', 0, max_attempts, run_at, priority,
                       meta::jsonb, created_at
                FROM unnest(%(id)s::text[], %(queue)s::text[], %(payload)s::bytea[],
                            %(max_attempts)s::integer[], %(run_at)s::float8[],
                            %(priority)s::bigint[], %(meta)s::text[], %(created_at)s::float8[])
                     AS x(id, queue, payload, max_attempts, run_at, priority, meta, created_at)
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
