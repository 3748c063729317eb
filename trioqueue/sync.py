"""A blocking client for code outside Trio (Django, Flask, scripts): ``trioqueue.sync.Client``.

Example::

    from trioqueue.sync import Client

    client = Client("postgresql://app@db/app", queue="email")
    tid = client.push({"to": "a@example.com"})
    print(client.wait_result(tid, timeout=30))
    client.close()

It pushes with the Trio backends' own checks, codecs and SQL, so a Trio
worker (``trioqueue worker ...``) runs what it pushes. See ``docs/clients.md``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import Any

from ._client._common import (
    POLL_MAX,
    POLL_MIN,
    Encoder,
    check_taken,
    final_result,
    no_task,
    retention_shown,
    rule_to_store,
    url_kind,
)
from ._client._sqlite import SqliteStore, sqlite_options
from ._codec import Codec
from ._driver import StoredTask
from ._errors import PushError
from ._lifecycle import Retention
from ._registry import redact_url
from ._sink import IfExists
from ._task import Task, TaskId

__all__ = ["Client"]

_IN_TX = "the task could not be inserted in the caller's transaction"


class Client:
    """A blocking, thread-safe client of a SQLite or PostgreSQL store.

    Args:
      url: ``sqlite:///path.db`` or ``postgresql://user@host/db`` (the URL a
        Trio worker opens).
      queue: The queue pushed to (default ``"default"``).
      codec: The codec (default ``JsonCodec()``; a worker must use the same).
      schema: PostgreSQL: the schema of trioqueue's tables (default ``"trioqueue"``).
      migrate: Create or upgrade the tables on open (default true).
      pool_size: Connections kept at most; threads beyond it wait for one.
      connect_timeout: PostgreSQL: seconds to wait for a connection.
      busy_timeout: SQLite: seconds a write waits for another process's lock.

    Raises:
      BackendError: the store cannot be reached or its schema is unusable.
      ValueError: for a ``memory://`` or unknown URL, or a bad option.

    Resource handling:
      Connections are opened as needed (one per concurrent call, up to
      ``pool_size``) and closed by ``close()`` or the ``with`` block's end.
    """

    def __init__(
        self,
        url: str,
        *,
        queue: str = "default",
        codec: Codec | None = None,
        schema: str = "trioqueue",
        migrate: bool = True,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        busy_timeout: float = 5.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size!r}")
        self.kind = url_kind(url)
        self.url = url
        self._enc = Encoder(queue=queue, codec=codec)
        self.queue = self._enc.queue
        self.codec = self._enc.codec
        self._sqlite: SqliteStore | None = None
        self._pg: Any = None
        if self.kind == "sqlite":
            path, busy, synchronous = sqlite_options(url, busy_timeout)
            self._sqlite = SqliteStore(
                path,
                busy_timeout=busy,
                synchronous=synchronous,
                migrate=migrate,
                pool_size=pool_size,
            )
        else:
            from ._client._pg import PgStore, prepare_schema

            prepare_schema(url, schema, migrate=migrate, connect_timeout=connect_timeout)
            self._pg = PgStore(
                url, schema=schema, pool_size=pool_size, connect_timeout=connect_timeout
            )
        self._store: Any = self._sqlite if self._sqlite is not None else self._pg

    # -- pushing --

    def push(
        self,
        args: Any,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
        if_exists: IfExists = "skip",
    ) -> TaskId:
        """Encode ``args`` and store it as a new task (one statement on PostgreSQL).

        The arguments are ``TaskSink.push``'s, with the same checks.

        Returns:
          The task's id.

        Raises:
          CodecError: ``args`` or ``meta`` cannot be encoded or is too large.
          DuplicateTask: the id is taken (see ``if_exists``).
          PushError: storage refused or failed (its error is the cause).
          TypeError, ValueError: for arguments of the wrong type or range.
        """
        mode = self._enc.if_exists(if_exists)
        rec = self._enc.one(
            args, delay=delay, run_at=run_at, priority=priority,
            max_attempts=max_attempts, id=id, meta=meta,
        )  # fmt: skip
        self._insert([rec], mode)
        return TaskId(rec.id)

    def push_bulk(self, items: Iterable[Any]) -> list[TaskId]:
        """Encode every item and store them all in one transaction (all or none).

        Returns:
          The ids, in order. Raises as ``push`` does.
        """
        records = self._enc.many(items)
        if records:
            self._insert(records, "skip")
        return [TaskId(r.id) for r in records]

    def _insert(self, records: list[StoredTask], if_exists: IfExists) -> None:
        n, held = self._store.insert(records, if_exists)
        check_taken(records, n, held, if_exists)

    def push_in(
        self,
        conn: Any,
        args: Any,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> TaskId:
        """Push a task in the caller's transaction on ``conn``: it exists iff that commits.

        Nothing is committed or rolled back here: the caller does it. On
        PostgreSQL the wake-up NOTIFY is sent in the same transaction (so
        workers hear of the task when it commits); on SQLite the commit's
        write to the file wakes them.

        Args:
          conn: The app's ``sqlite3.Connection`` to the client's file, or a
            psycopg ``Connection`` to the client's database.
          args: The handler's input; the other arguments are as in ``push``
            (an id that is taken stores nothing new).

        Returns:
          The task's id.

        Raises:
          TypeError: ``conn`` is not a connection of the client's kind (an
            asyncio connection needs ``trioqueue.asyncio``).
          ValueError: the SQLite connection is to another file.
          PushError: the statement failed (the driver's error is the cause);
            the caller's transaction should then be rolled back.
          CodecError, TypeError, ValueError: as ``push``.
        """
        rec = self._enc.one(
            args, delay=delay, run_at=run_at, priority=priority,
            max_attempts=max_attempts, id=id, meta=meta,
        )  # fmt: skip
        if self._sqlite is not None:
            if not isinstance(conn, sqlite3.Connection):
                raise TypeError(f"a SQLite client takes a sqlite3.Connection, got {_kind(conn)}")
            try:
                self._sqlite.insert_on(conn, rec)
            except sqlite3.Error as exc:
                raise PushError(_IN_TX) from exc
            return TaskId(rec.id)
        import psycopg

        if isinstance(conn, psycopg.AsyncConnection):
            raise TypeError(
                "an AsyncConnection needs the asyncio client (trioqueue.asyncio.open_client)"
            )
        if not isinstance(conn, psycopg.Connection):
            raise TypeError(f"a PostgreSQL client takes a psycopg Connection, got {_kind(conn)}")
        try:
            self._pg.insert_on(conn, rec)
        except psycopg.Error as exc:
            raise PushError(_IN_TX) from exc
        return TaskId(rec.id)

    # -- following --

    def get_task(self, id: str) -> Task[Any] | None:
        """Return the task with this id (args and result as plain data), or None."""
        rec = self._store.get(str(id))
        return None if rec is None else self._enc.task(rec)

    def wait_result(self, id: str, *, type: Any = None, timeout: float | None = None) -> Any:
        """Block until task ``id`` is final and return its result.

        PostgreSQL: it LISTENs on the channel the workers notify of changes
        (and reads at least every second). SQLite: it reads the task every
        5 ms at first, backing off to every 250 ms while nothing changes.

        Args:
          id: The task's id.
          type: Decode the result into this type (default: plain data).
          timeout: Seconds to wait at most (default: no limit).

        Returns:
          The decoded result of a DONE task.

        Raises:
          TimeoutError: ``timeout`` passed first (the task is left alone).
          TaskFailed: the task ended KILLED (``.task`` holds its record).
          TaskCancelled: the task was cancelled.
          LookupError: no such task.
          CodecError: the result does not decode into ``type``.
        """
        id = str(id)
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        if self._pg is not None:
            rec = self._pg.wait_final(id, deadline)
        else:
            rec = self._poll(id, deadline)
        if rec is None:
            raise no_task(id)
        return final_result(self._enc, rec, type)

    def _poll(self, id: str, deadline: float) -> StoredTask | None:
        assert self._sqlite is not None
        pause, last = POLL_MIN, None
        while True:
            rec = self._sqlite.get(id)
            if rec is None or rec.status.is_final:
                return rec
            key = (rec.status, rec.attempts, rec.progress)
            pause = POLL_MIN if key != last else min(POLL_MAX, pause * 2)
            last = key
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {id} is not finished ({rec.status.value})")
            _sleep(min(pause, left))

    def cancel_task(self, id: str) -> bool:
        """Cancel a task that is not final (as ``Backend.cancel_task``).

        A PENDING or FAILED task is CANCELLED at once; a QUEUED or RUNNING one
        is flagged and its worker cancels it (on PostgreSQL at once, by NOTIFY).

        Returns:
          Whether the task was cancelled or flagged (False: final or unknown).
        """
        return bool(self._store.cancel(str(id)))

    # -- the queues' retention --

    def set_retention(self, queue: str, retention: Retention | None) -> None:
        """Store ``queue``'s retention in the store (as ``Backend.set_retention``).

        Every worker of ``queue``, on every host, prunes its finished tasks by
        this rule from its next prune on; None keeps them forever.

        Raises:
          TypeError, ValueError: for a wrong type, a negative period or an
            invalid queue name (nothing is stored).
          BackendError: storage failed.
        """
        name, rule = rule_to_store(queue, retention)
        self._store.set_retention(name, rule)

    def retention(self, queue: str | None = None) -> Retention | None:
        """Return ``queue``'s stored retention (default: the client's queue); None: kept forever.

        A queue with no stored rule shows ``Retention()``, the default of
        ``open_backend`` and the command line (a worker opened with another
        default applies its own).
        """
        name = self.queue if queue is None else queue
        return retention_shown(name, self._store.retentions([name]))

    # -- resources --

    def close(self) -> None:
        """Close the client's connections (idempotent)."""
        self._store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client {redact_url(self.url)!r} queue={self.queue!r} {self._store!r}>"


def _kind(conn: object) -> str:
    return f"{type(conn).__module__}.{type(conn).__qualname__}"


# A blocking client's waits block its thread, and only it.
_sleep = threading.Event().wait
