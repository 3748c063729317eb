"""The PostgreSQL backend: claims with ``FOR UPDATE SKIP LOCKED``, wakes with LISTEN/NOTIFY.

Each driver call (``_pg_driver.PostgresDriver``) is one SQL statement (its own
transaction) over one crossing from Trio into psycopg (a statement runner,
``_pg_runner.py``); see ``docs/postgres.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from .._backend import Backend
from .._codec import Codec
from .._durations import seconds
from .._errors import PushError
from .._nursery import open_nursery
from .._registry import BackendSpec
from .._sink import check_queue_name
from .._task import TaskId
from ._pg_driver import SYNCHRONOUS_MODES
from ._pg_driver import PostgresDriver as PostgresDriver
from ._pg_runner import RUNNERS, open_runner
from ._pg_schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._pg_schema import check_identifier, reach

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "PostgresDriver", "migrate", "split_url_options"]

#: trioqueue's own options that a URL's query may carry, and how to read them;
#: they are taken out before libpq sees the URL.
_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "schema": str,
    "listen": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
    "migrate": lambda v: v.strip().lower() in ("1", "true", "yes", "on"),
    "pool_size": int,
    "statement_timeout": float,
    "connect_timeout": float,
    "runner": str,
    "synchronous": str,
}


def split_url_options(url: str) -> tuple[str, dict[str, Any]]:
    """Return ``url`` without trioqueue's own query options, and those options.

    ``postgresql://db/app?schema=jobs&listen=false&sslmode=require`` gives
    ``postgresql://db/app?sslmode=require`` and ``{"schema": "jobs", "listen": False}``:
    libpq's own parameters stay in the URL. A libpq ``key=value`` string is
    returned as it is.

    Raises:
      ValueError: for an option whose value does not fit (``pool_size=many``).
    """
    if "://" not in url:
        return url, {}
    parts = urlsplit(url)
    kept, ours = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = _URL_OPTIONS.get(key)
        if convert is None:
            kept.append((key, value))
            continue
        try:
            ours[key] = convert(value)
        except ValueError:
            raise ValueError(f"URL option {key}={value!r} is not valid") from None
    if not ours:
        return url, {}
    return urlunsplit(parts._replace(query=urlencode(kept))), ours


async def migrate(url: str, *, schema: str = "trioqueue", connect_timeout: float = 10.0) -> int:
    """Create or upgrade trioqueue's tables in ``schema`` and return the schema version.

    Idempotent, and safe to run from several processes at once (an advisory
    lock serializes them).

    Args:
      url: A ``postgresql://`` URL or libpq connection string.
      schema: The schema to hold the tables (letters, digits and ``_``).
      connect_timeout: Seconds to wait for the server.

    Returns:
      The schema version now in place.

    Raises:
      ValueError: if ``schema`` is not a plain identifier.
      BackendError: if the server cannot be reached or the migration failed.
    """
    url, ours = split_url_options(url)
    schema = ours.get("schema", schema)
    check_identifier(schema)
    return await reach(url, schema, migrate=True, connect_timeout=connect_timeout)


def migration_sql(*, schema: str = "trioqueue", **_: Any) -> str:
    """Return the statements ``migrate`` runs on an empty database, as one SQL script.

    For teams whose DBAs apply migrations: the script runs in one transaction
    and records the version it reaches, so ``migrate`` and ``open`` accept it.

    Raises:
      ValueError: if ``schema`` is not a plain identifier.
    """
    from psycopg import sql

    from ._pg_schema import MIGRATIONS

    s = sql.Identifier(check_identifier(schema))
    lines = [
        f"-- trioqueue schema version {SCHEMA_VERSION} in schema {schema}",
        "BEGIN;",
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {s};").format(s=s).as_string(None),
        sql.SQL("CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL);")
        .format(s=s)
        .as_string(None),
    ]
    for n, body in enumerate(MIGRATIONS, start=1):
        lines.append(f"-- migration {n}")
        lines.append(sql.SQL(body).format(s=s).as_string(None).strip().rstrip(";") + ";")
        lines.append(
            sql.SQL("INSERT INTO {s}.schema_version (version) VALUES ({n});")
            .format(s=s, n=sql.Literal(n))
            .as_string(None)
        )
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


class PostgresBackend(Backend):
    """The PostgreSQL backend (``postgresql://``): durable, shared by many processes.

    Example::

        async with PostgresBackend.open("postgresql://app@db/app", queue="email") as b:
            await b.push({"to": "a@example.com"})

    See ``docs/postgres.md`` for the schema, claiming and wake-ups.
    """

    driver: PostgresDriver

    # One COPY of up to 1,024 rows per transaction: a commit for every 256
    # rows made a bulk push about 15% slower (measured).
    _bulk_chunk = 1024

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        *,
        queue: str = "default",
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        schema: str = "trioqueue",
        listen: bool = True,
        statement_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        pool_size: int = 4,
        runner: str = "native",
        synchronous: str = "normal",
        **options: Any,
    ) -> AsyncIterator[PostgresBackend]:
        """Connect, migrate the schema, LISTEN, and yield the backend for the block.

        Args:
          url: ``postgresql://user:password@host:port/dbname`` (or ``postgres://``,
            or a libpq key=value string). Its query may set the options below
            (``?schema=jobs&listen=false&pool_size=8``); they are taken out before
            libpq sees it, and an option passed as an argument wins.
          queue: The queue pushed to and claimed from (default ``"default"``).
          codec: The codec (default ``JsonCodec()``).
          clock: A function returning POSIX seconds (tests move time by hand).
          migrate: Apply missing migrations on open (default true).
          schema: The schema holding trioqueue's tables (default ``"trioqueue"``).
          listen: Wake idle workers, result waiters and the workers of tasks
            whose cancellation was requested with LISTEN/NOTIFY (default, one
            LISTEN connection opened on first need); false polls every
            ``poll_interval`` (for poolers without LISTEN).
          statement_timeout: Seconds after which the server cancels a statement.
          connect_timeout: Seconds to wait for a connection.
          pool_size: Connections the backend uses at most for statements.
          runner: How statements run: ``"native"`` (the default: psycopg's
            libpq connection driven from Trio itself), ``"asyncio"`` (psycopg
            async on trio-asyncio) or ``"thread"`` (sync psycopg in worker threads).
          synchronous: ``"normal"`` (the default): a push (and every
            administration call) returns once its commit is on the server's
            disk, while a worker's claims, lease extensions and outcomes do
            not wait for it (a server crash may lose the last of them; their
            tasks then run again). ``"full"``: every statement waits.
          **options: The options of the shared bridge, ``Backend``
            (``push_buffer``, ``insert_batch``).

        Raises:
          BackendError: if the server cannot be reached or the migration failed.
          ValueError: for an invalid ``schema``, ``runner``, ``synchronous`` or timeout.

        Resource handling:
          Connections (a small pool plus one LISTEN connection) and, for the
          asyncio runner, a trio-asyncio loop (unless one is already running
          in this task) live as long as the block.
        """
        url, ours = split_url_options(url)
        given = locals()  # an option given as an argument wins over the URL's
        defaults = _OPEN_DEFAULTS
        picked = {k: v for k, v in ours.items() if given[k] == defaults[k]}
        schema = picked.get("schema", schema)
        listen = picked.get("listen", listen)
        migrate = picked.get("migrate", migrate)
        pool_size = picked.get("pool_size", pool_size)
        statement_timeout = picked.get("statement_timeout", statement_timeout)
        connect_timeout = picked.get("connect_timeout", connect_timeout)
        runner = picked.get("runner", runner)
        synchronous = picked.get("synchronous", synchronous)
        check_identifier(schema)
        check_queue_name(queue)
        if runner not in RUNNERS:
            raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        statement_timeout = seconds("statement_timeout", statement_timeout, positive=True)
        connect_timeout = seconds("connect_timeout", connect_timeout, positive=True)
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        await reach(url, schema, migrate=migrate, connect_timeout=connect_timeout)
        async with open_runner(
            runner,
            url,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            connect_timeout=connect_timeout,
        ) as r:
            driver = PostgresDriver(
                r,
                schema=schema,
                clock=clock,
                listen=listen,
                shield_seconds=statement_timeout + connect_timeout,
                synchronous=synchronous,
            )
            backend = cls(driver, queue=queue, codec=codec, transient=BACKEND.transient, **options)
            async with open_nursery() as nursery:
                driver.attach(nursery)
                try:
                    async with backend.running():
                        yield backend
                finally:
                    nursery.cancel_scope.cancel()

    async def push_in(
        self,
        conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any],
        args: Any,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> TaskId:
        """Push a task inside the caller's transaction on ``conn``: it exists iff that commits.

        The task is inserted (and its wake-up NOTIFY sent) with ``conn``, so it
        is visible to workers only once the caller's transaction commits, and
        vanishes if it rolls back. The connection must reach the same database.

        Args:
          conn: A psycopg ``AsyncConnection`` (run on a trio-asyncio loop: the
            one current in this task, else the backend's) or a sync
            ``Connection`` (run in a worker thread).
          args: The handler's input; the other arguments are as in ``push``.

        Returns:
          The task's id (an existing id stores nothing new).

        Raises:
          CodecError, TypeError, ValueError: as ``push``.
          PushError: if the statement failed (psycopg's error is the cause).
        """
        rec = self._record(
            args,
            now=self._now(),
            delay=delay,
            run_at=run_at,
            priority=priority,
            max_attempts=max_attempts,
            id=id,
            meta=meta,
        )
        try:
            await self.driver.insert_on(conn, [rec])
        except psycopg.Error as exc:
            raise PushError("the task could not be inserted in the caller's transaction") from exc
        return TaskId(rec.id)


_OPEN_DEFAULTS: dict[str, Any] = {
    "schema": "trioqueue",
    "listen": True,
    "migrate": True,
    "pool_size": 4,
    "statement_timeout": 30.0,
    "connect_timeout": 10.0,
    "runner": "native",
    "synchronous": "normal",
}

#: The backend table's row for ``postgresql://`` (and ``postgres://``): lost or
#: refused connections, server shutdowns, statement timeouts, serialization
#: failures and deadlocks (``OperationalError`` and its subclasses), broken
#: sockets and a statement that never came back (``OSError``) may pass.
BACKEND = BackendSpec(
    name="postgresql",
    schemes=("postgresql", "postgres"),
    open=PostgresBackend.open,
    example="postgresql://user@host/db",
    transient=(psycopg.OperationalError, psycopg.InterfaceError, OSError),
    migrate=migrate,
    schema_version=SCHEMA_VERSION,
    options=frozenset({"schema", "listen", "pool_size", "migrate"}),
    migration_sql=migration_sql,
)
