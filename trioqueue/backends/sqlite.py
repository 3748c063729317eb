"""The SQLite backend: one file, several processes, no server (the embedded default).

One connection per driver. Short statements run on the Trio thread (never
waiting for a lock: ``busy_timeout`` is 0 there); large inserts, waits for
another process's write lock and WAL checkpoints run on the driver's own
thread. Writes are ``BEGIN IMMEDIATE`` transactions, so two processes never
claim the same task; pushes are synced to disk before they are acknowledged.
An idle worker sleeps until inotify reports a write to the WAL file (Linux),
else polls. See ``docs/sqlite.md``.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._backend import Backend
from .._codec import Codec
from .._durations import seconds_option
from .._errors import BackendError
from .._registry import BackendSpec
from . import _sqlite_schema as schema
from ._sqlite_driver import SqliteDriver as SqliteDriver
from ._sqlite_schema import SCHEMA_VERSION as SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SqliteBackend", "SqliteDriver"]


class SqliteBackend(Backend):
    """The SQLite backend (``sqlite:///path.db``): durable, embedded, multi-process.

    Example::

        async with SqliteBackend.open("sqlite:///jobs.db", queue="email") as backend:
            await backend.push({"to": "a@example.com"})

    Several processes (and several ``open()`` calls in one process) may use the
    same file: each has its own connection and claims never overlap.
    """

    # Up to 1,024 rows per transaction, each commit synced to disk: one for
    # every 256 rows made a bulk push about 15% slower (measured).
    _bulk_chunk = 1024

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        target: str,
        *,
        queue: str = "default",
        codec: Codec | None = None,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
        **options: Any,
    ) -> AsyncIterator[SqliteBackend]:
        """Open (creating if needed) the SQLite database ``target`` for the block.

        Args:
          target: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (query
            options allowed: ``?busy_timeout=10&synchronous=full``) or a plain path.
          queue: The queue pushed to and claimed from (default ``"default"``).
          codec: The codec (default ``JsonCodec()``).
          clock: A function returning POSIX seconds (for tests that move time by hand).
          migrate: Create or upgrade the schema (default True). With False, a
            database file that does not exist is an error (nothing is created).
          **options: ``busy_timeout`` (seconds, default 5), ``synchronous``
            (``"off"``, ``"normal"``, ``"full"``), ``poll_min`` and ``poll_max``
            (seconds, default 0.001 and 0.1), ``watch`` (default True: sleep on
            inotify between other processes' commits) and the bridge options
            (``push_buffer``, ``insert_batch``, ``insert_attempts``).

        Raises:
          BackendError: if the database cannot be opened or its schema is unusable;
            the sqlite3 error is the ``__cause__``.
          ValueError: for a malformed URL or option.

        Resource handling:
          The connection is closed when the block exits.
        """
        if isinstance(target, str) and target[:7].lower() == "sqlite:" and target[7:9] != "//":
            raise ValueError(
                f"a SQLite URL starts with sqlite:// (sqlite:///relative.db or "
                f"sqlite:////abs.db), got {target!r}"
            )
        path, url_options = schema.parse_target(target)
        if not migrate and path != ":memory:" and not await trio.Path(path).exists():
            missing = FileNotFoundError(errno.ENOENT, "no such file", path)
            raise BackendError(
                f"no SQLite database at {path!r} (nothing created; migrate=True creates it)"
            ) from missing

        def option(name: str, default: float) -> float:
            return seconds_option(name, options.pop(name, url_options.pop(name, default)))

        busy_timeout = option("busy_timeout", 5.0)
        synchronous = str(options.pop("synchronous", url_options.pop("synchronous", "normal")))
        poll_min, poll_max = option("poll_min", 0.001), option("poll_max", 0.1)
        watch = schema.parse_bool("watch", options.pop("watch", url_options.pop("watch", True)))
        if url_options:
            raise ValueError(f"unknown SQLite URL options: {sorted(url_options)}")
        driver = await SqliteDriver.connect(
            path,
            clock=clock,
            migrate=migrate,
            busy_timeout=busy_timeout,
            synchronous=synchronous.lower(),
            poll_min=poll_min,
            poll_max=poll_max,
            watch=watch,
        )
        try:
            backend = cls(driver, queue=queue, codec=codec, transient=BACKEND.transient, **options)
        except BaseException:
            with trio.CancelScope(shield=True):
                await driver.aclose()
            raise
        async with backend.running():
            yield backend


async def _migrate(url: str, **options: Any) -> int:
    async with SqliteBackend.open(url, migrate=True, **options):
        pass
    return SCHEMA_VERSION


def _migration_sql(**_: Any) -> str:
    from ._sqlite_schema import MIGRATIONS

    lines = [f"-- trioqueue SQLite schema version {SCHEMA_VERSION}", "BEGIN IMMEDIATE;"]
    lines.append("CREATE TABLE IF NOT EXISTS trioqueue_schema (version INTEGER NOT NULL);")
    for n, body in enumerate(MIGRATIONS, start=1):
        lines += [f"-- migration {n}", body.strip().rstrip(";") + ";"]
    lines += [
        "DELETE FROM trioqueue_schema;",
        f"INSERT INTO trioqueue_schema (version) VALUES ({SCHEMA_VERSION});",
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


#: The backend table's row for ``sqlite://``: a locked or busy file, a full
#: disk or an I/O error (``OperationalError``) may pass; other errors do not.
BACKEND = BackendSpec(
    name="sqlite",
    schemes=("sqlite",),
    open=SqliteBackend.open,
    example="sqlite:///path.db",
    transient=(sqlite3.OperationalError,),
    migrate=_migrate,
    schema_version=SCHEMA_VERSION,
    options=frozenset({"migrate"}),
    migration_sql=_migration_sql,
)
