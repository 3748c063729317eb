"""``PgStore``: the PostgreSQL driver's statements on a small pool of blocking psycopg connections.

``PgOps`` picks each operation's statement and parameters from the driver's
own ``Statements`` and ``AdminStatements`` (so a push is the Trio driver's
one-statement insert with its NOTIFY); ``PgStore`` runs them, and
``_pg_async.AsyncPgStore`` runs the same ones on psycopg's asyncio API.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg import sql as pgsql

from .._driver import RetentionRule, StoredTask
from .._errors import BackendError, PushError
from .._registry import redact_url
from .._sink import IfExists
from ..backends._columns import status_of
from ..backends._pg_admin_sql import AdminStatements
from ..backends._pg_schema import (
    COLUMNS,
    SCHEMA_VERSION,
    _connect_error,
    _version,
    check_identifier,
    migrate_connection,
)
from ..backends._pg_statements import Statements
from ._common import LISTEN_MAX, Held

__all__ = ["PgOps", "PgStore", "prepare_schema"]

T = TypeVar("T")
Query = Any  # a composed statement's text
Row = tuple[Any, ...]

#: Attempts of a call whose connection was lost (a server restart, a pooler's cut).
ATTEMPTS = 3


def prepare_schema(url: str, schema: str, *, migrate: bool, connect_timeout: float) -> None:
    """Connect once and bring ``schema`` up to date (or, without ``migrate``, check it is).

    Raises:
      BackendError: the server cannot be reached, or the schema is missing or
        at another version; psycopg's error is the cause.
    """
    check_identifier(schema)
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(connect_timeout))) as conn:
            if migrate:
                migrate_connection(conn, schema)
                return
            found = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".schema_version',)
            ).fetchone()
            version = _version(conn, schema) if found and found[0] else 0
            if version != SCHEMA_VERSION:
                raise BackendError(
                    f"schema {schema} is at version {version}, not {SCHEMA_VERSION}: run "
                    f"`trioqueue migrate` or open the client with migrate=True"
                )
    except psycopg.OperationalError as exc:
        raise BackendError(redact_url(str(_connect_error(url, exc)))) from exc
    except psycopg.Error as exc:
        raise BackendError(redact_url(f"cannot use PostgreSQL schema {schema!r}: {exc}")) from exc


class PgOps:
    """The statement and parameters of each client operation, for one schema."""

    def __init__(self, schema: str) -> None:
        self.st = Statements(check_identifier(schema))
        self.admin = AdminStatements(schema, self.st)
        #: ``LISTEN`` on the channel the Trio driver notifies of status changes.
        self.listen = pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.st.change_channel))

    def insert(self, records: list[StoredTask], if_exists: IfExists) -> tuple[Query, Any]:
        """The one statement that stores ``records`` (and NOTIFYs their queues)."""
        if if_exists == "replace_finished":
            return self.admin.replace, self.admin.replace_params(records)
        if len(records) == 1:
            return self.st.insert_one, self.st.insert_one_params(records[0])
        return self.st.insert, self.st.insert_params(records)

    @staticmethod
    def stored(records: list[StoredTask], if_exists: IfExists, rows: list[Row]) -> int:
        """How many of ``records`` the statement of ``insert`` stored, read from its rows."""
        if len(records) == 1 and if_exists != "replace_finished":
            return len(rows)  # insert_one: a row for a task stored, none for an id taken
        return int(str(rows[0][0]))

    def queues_of(self, records: list[StoredTask]) -> tuple[Query, Any]:
        return self.admin.queues_of, {"ids": [r.id for r in records]}

    @staticmethod
    def held(rows: list[Row]) -> Held:
        return {id: (q, status_of(st)) for id, q, st in rows}

    def get(self, id: str) -> tuple[Query, Any]:
        return self.admin.get, {"id": str(id)}

    @staticmethod
    def record(rows: list[Row]) -> StoredTask | None:
        return COLUMNS.shown(rows[0]) if rows else None

    def set_retention(self, queue: str, rule: RetentionRule) -> tuple[Query, Any]:
        params = {"queue": queue, "done": rule.done, "killed": rule.killed}
        return self.admin.set_retention, {**params, "cancelled": rule.cancelled}

    def retentions(self, queues: list[str]) -> tuple[Query, Any]:
        return self.admin.retentions, {"queues": queues}

    @staticmethod
    def rules(rows: list[Row]) -> dict[str, RetentionRule]:
        return {
            str(q): RetentionRule(*(None if v is None else float(v) for v in (d, k, c)))
            for q, d, k, c in rows
        }

    def cancel(self, id: str) -> tuple[Query, Any]:
        return self.admin.cancel, self.admin.cancel_params(str(id), time.time())

    @staticmethod
    def concerns(payload: str, id: str) -> bool:
        """Whether a change notification may be about task ``id`` ('' means: any task)."""
        if not payload:
            return True
        try:
            return id in msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return True


def _error(what: str) -> type[BackendError] | type[PushError]:
    return PushError if what == "push" else BackendError


class PgStore:
    """Blocking, thread-safe access to trioqueue's tables in one PostgreSQL database.

    Args:
      url: A ``postgresql://`` URL (or libpq string).
      schema: The schema of trioqueue's tables (default ``"trioqueue"``).
      pool_size: Connections kept at most (one per concurrent call).
      connect_timeout: Seconds to wait for a connection.
    """

    def __init__(
        self, url: str, *, schema: str, pool_size: int = 4, connect_timeout: float = 10.0
    ) -> None:
        self.url = url
        self.ops = PgOps(schema)
        self._timeout = max(1, round(connect_timeout))
        self._free: queue.LifoQueue[psycopg.Connection[Row]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: set[psycopg.Connection[Row]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> psycopg.Connection[Row]:
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
        except psycopg.OperationalError as exc:
            raise BackendError(redact_url(str(_connect_error(self.url, exc)))) from exc
        with self._lock:
            self._all.add(conn)
        return conn

    def _discard(self, conn: psycopg.Connection[Row]) -> None:
        with self._lock:
            self._all.discard(conn)
        conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Row]]:
        """Borrow a pooled connection (autocommit); a broken one is replaced."""
        if self._closed:
            raise BackendError("the client is closed")
        with self._slots:
            try:
                conn = self._free.get_nowait()
            except queue.Empty:
                conn = self._connect()
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok or not (conn.broken or conn.closed):
                    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                        self._free.put(conn)
                        conn = None  # type: ignore[assignment]
                if conn is not None:
                    self._discard(conn)

    def call(self, what: str, fn: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run ``fn`` on a pooled connection, again on a fresh one if the connection was lost."""
        for attempt in range(ATTEMPTS):
            try:
                with self.connection() as conn:
                    return fn(conn)
            except psycopg.OperationalError as exc:
                if attempt + 1 < ATTEMPTS:
                    time.sleep(0.05 * 4**attempt)
                    continue
                raise _error(what)(f"PostgreSQL: could not {what}: {exc}") from exc
            except psycopg.Error as exc:
                raise _error(what)(f"PostgreSQL: could not {what}: {exc}") from exc
        raise AssertionError("unreachable")

    def fetch(self, what: str, query: tuple[Query, Any]) -> list[Row]:
        """Run one statement and return its rows."""

        def run(conn: psycopg.Connection[Row]) -> list[Row]:
            return conn.execute(query[0], query[1]).fetchall()

        return self.call(what, run)

    # -- operations --

    def insert(self, records: list[StoredTask], if_exists: IfExists) -> tuple[int, Held]:
        """Store ``records`` in one statement; return how many and the ids found taken."""
        rows = self.fetch("push", self.ops.insert(records, if_exists))
        n = self.ops.stored(records, if_exists, rows)
        if n >= len(records):
            return n, {}
        return n, self.ops.held(self.fetch("push", self.ops.queues_of(records)))

    def insert_on(self, conn: psycopg.Connection[Any], record: StoredTask) -> None:
        """Insert ``record`` (and its NOTIFY) with the caller's connection, in its transaction."""
        query, params = self.ops.insert([record], "skip")
        conn.execute(query, params)

    def get(self, id: str) -> StoredTask | None:
        """Return one task, or None."""
        return self.ops.record(self.fetch("read a task", self.ops.get(id)))

    def cancel(self, id: str) -> bool:
        """Cancel a PENDING or FAILED task; flag a QUEUED or RUNNING one (its worker stops it)."""
        return bool(self.fetch("cancel a task", self.ops.cancel(id))[0][0])

    def set_retention(self, queue: str, rule: RetentionRule) -> None:
        """Store ``queue``'s retention rule."""
        self.fetch("store a queue's retention", self.ops.set_retention(queue, rule))

    def retentions(self, queues: list[str]) -> dict[str, RetentionRule]:
        """Return the stored rules of ``queues``, by queue."""
        return self.ops.rules(self.fetch("read a retention", self.ops.retentions(queues)))

    def wait_final(self, id: str, deadline: float) -> StoredTask | None:
        """Return task ``id`` once final (None: no such task), LISTENing for its changes.

        Raises:
          TimeoutError: past ``deadline`` (``time.monotonic()``).
        """

        def run(conn: psycopg.Connection[Row]) -> StoredTask | None:
            conn.execute(self.ops.listen)
            try:
                while True:
                    query, params = self.ops.get(id)
                    rec = self.ops.record(conn.execute(query, params).fetchall())
                    if rec is None or rec.status.is_final:
                        return rec
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        raise TimeoutError(f"task {id} is not finished ({rec.status.value})")
                    for n in conn.notifies(timeout=min(wait, LISTEN_MAX)):
                        if self.ops.concerns(n.payload, id):
                            break
            finally:
                if not conn.closed:
                    conn.execute("UNLISTEN *")

        return self.call("wait for a task", run)

    def close(self) -> None:
        """Close every connection (idempotent)."""
        self._closed = True
        with self._lock:
            conns, self._all = self._all, set()
        for conn in conns:
            conn.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PgStore {redact_url(self.url)!r} {state} connections={len(self._all)}>"
