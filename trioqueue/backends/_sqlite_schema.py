"""The SQLite backend's schema and connection set-up.

Migrations are SQL scripts applied in order on open (the table has one column
per field of ``StoredTask``); the statements the driver runs are in
``_sqlite_statements.py``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, unquote, urlsplit

from .._errors import BackendError
from .._registry import redact_url

log = logging.getLogger("trioqueue.backends.sqlite")

Conn = sqlite3.Connection

#: A task's run id (meta ``trioqueue_run``), NULL when its meta is not valid JSON:
#: the expression of the index ``trioqueue_tasks_run``, so queries must spell it so.
RUN_OF_META = "CASE WHEN json_valid(meta) THEN json_extract(meta, '$.trioqueue_run') END"

#: The predicates of the partial indexes ``trioqueue_tasks_finished`` and
#: ``trioqueue_tasks_status_rare`` as migration 9 wrote them: a query can use
#: either index only if its WHERE holds the same expression (or implies it).
FINISHED = "(status = 'done' OR status = 'killed' OR status = 'cancelled')"
RARE = "(status = 'failed' OR status = 'killed' OR status = 'cancelled')"

#: A search by run id is ``RUN_SEARCH = ?``: the run index's expression behind
#: a comparison of meta with the empty object, the predicate migration 10 gave
#: the index. Most tasks have no meta: that one comparison spares the JSON
#: functions on every insert (about 0.4 µs a row of a bulk push, measured).
NOT_EMPTY_META = "meta <> '{}'"
RUN_SEARCH = f"{NOT_EMPTY_META} AND {RUN_OF_META}"


def _node_ended_trigger(run_match: str, *, signal: bool = False) -> str:
    # The end rule of workflows (see migration 5). ``run_match`` is the
    # left-hand side of the cascade's search by run: it must name the
    # expression (and the predicate) of the run index as it stands. With
    # ``signal`` (migration 11) it also moves the cancel count, so the workers
    # holding the run's flagged tasks learn of it through the file's wake-up.
    signal_cancel = (
        "\n    UPDATE trioqueue_signals SET generation = generation + 1 WHERE name = 'cancel';"
        if signal
        else ""
    )
    drop_joins = (
        "DELETE FROM trioqueue_flow_joins WHERE run = json_extract(new.meta, '$.trioqueue_run');"
    )
    return f"""\
CREATE TRIGGER trioqueue_flow_node_ended
AFTER UPDATE OF status ON trioqueue_tasks
WHEN new.status IN ('killed', 'cancelled') AND old.status NOT IN ('killed', 'cancelled', 'done')
    AND CASE WHEN json_valid(new.meta)
             THEN json_extract(new.meta, '$.trioqueue_node') END IS NOT NULL
BEGIN
    UPDATE trioqueue_tasks SET
        status = new.status,
        last_error = 'node ''' || json_extract(new.meta, '$.trioqueue_node') || ''' ended '
            || new.status || ': ' || coalesce(new.last_error, 'no reason given'),
        finished_at = new.finished_at,
        cancel_requested = 0
    WHERE id = json_extract(new.meta, '$.trioqueue_run') AND status = 'running';
    UPDATE trioqueue_tasks SET
        status = CASE WHEN status IN ('queued', 'running') THEN status ELSE 'cancelled' END,
        cancel_requested = status IN ('queued', 'running'),
        last_error = CASE WHEN status IN ('queued', 'running') THEN last_error
            ELSE 'Cancelled: its run ended' END,
        finished_at = CASE WHEN status IN ('queued', 'running') THEN finished_at
            ELSE new.finished_at END
    WHERE {run_match} = json_extract(new.meta, '$.trioqueue_run')
        AND id <> json_extract(new.meta, '$.trioqueue_run') AND id <> new.id
        AND status NOT IN ('done', 'killed', 'cancelled')
        AND (SELECT r.status FROM trioqueue_tasks r
             WHERE r.id = json_extract(new.meta, '$.trioqueue_run')) IN ('killed', 'cancelled');
    {drop_joins}{signal_cancel}
END;
"""


#: The statuses counted by their indexes, not by ``FINISHED_COUNTS``.
_INDEXED = "(status = 'pending' OR status = 'queued' OR status = 'running' OR status = 'failed')"


def _fin(row: str) -> str:
    # A task of the trigger row ``row`` (``old`` or ``new``) the counters count:
    # a final status, or one this code does not know (read back as KILLED).
    return "NOT " + _INDEXED.replace("status", f"{row}.status")


#: The finished-task counters, per queue and final status (migration 13).
FINISHED_COUNTS = "trioqueue_finished_counts"
_BUMP = (
    f"INSERT INTO {FINISHED_COUNTS} (queue, status, n) {{rows}} "
    "ON CONFLICT (queue, status) DO UPDATE SET n = n + excluded.n;"
)
#: Adds ``?3`` to the counter of (queue ``?1``, status ``?2``): for the writes
#: the triggers leave out (held tasks settled DONE, tasks inserted final).
BUMP_FINISHED = _BUMP.format(rows="VALUES (?1, ?2, ?3)")


#: The migrations, in order; the schema's version is how many were applied.
#: Each is a script of statements run in one transaction. Never edit one that
#: shipped: append a new one.
MIGRATIONS: tuple[str, ...] = (
    """\
CREATE TABLE trioqueue_tasks (
            id TEXT PRIMARY KEY NOT NULL,
            queue TEXT NOT NULL,
            payload BLOB NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 25,
            run_at REAL NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}',
            last_error TEXT,
            result BLOB,
            created_at REAL NOT NULL,
            finished_at REAL,
            lease_token TEXT,
            lease_expires_at REAL
        );
-- The claim query walks this in claim order.
CREATE INDEX trioqueue_tasks_claim
            ON trioqueue_tasks (queue, priority DESC, run_at, id)
            WHERE status IN ('pending', 'failed');
-- next_run_at: the earliest waiting task of a queue.
CREATE INDEX trioqueue_tasks_schedule
            ON trioqueue_tasks (queue, run_at)
            WHERE status IN ('pending', 'failed');
-- rescue: leases that expired.
CREATE INDEX trioqueue_tasks_lease
            ON trioqueue_tasks (lease_expires_at)
            WHERE status IN ('queued', 'running');
-- purge: finished tasks by age.
CREATE INDEX trioqueue_tasks_finished
            ON trioqueue_tasks (finished_at)
            WHERE status IN ('done', 'killed', 'cancelled');
""",
    # 2: the bounded traceback of a task's last failure.
    "ALTER TABLE trioqueue_tasks ADD COLUMN traceback TEXT;",
    # 3: a task's whole life (when its attempt started, its worker, its
    # progress, snoozes, a cancellation asked while it was claimed), the
    # paused queues and the workers' registry.
    """\
ALTER TABLE trioqueue_tasks ADD COLUMN started_at REAL;
ALTER TABLE trioqueue_tasks ADD COLUMN worker TEXT;
ALTER TABLE trioqueue_tasks ADD COLUMN progress TEXT;
ALTER TABLE trioqueue_tasks ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trioqueue_tasks ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE TABLE trioqueue_paused (queue TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;
CREATE TABLE trioqueue_workers (
            name TEXT PRIMARY KEY NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            queue TEXT NOT NULL,
            concurrency INTEGER NOT NULL,
            running INTEGER NOT NULL,
            started_at REAL NOT NULL,
            last_seen REAL NOT NULL
        );
""",
    # 4: the schedules (cron and intervals): each one's last tick, by name.
    """\
CREATE TABLE trioqueue_schedules (
            name TEXT PRIMARY KEY NOT NULL,
            queue TEXT NOT NULL,
            expr TEXT,
            interval REAL,
            tz TEXT NOT NULL,
            last_tick REAL,
            next_tick REAL,
            updated_at REAL NOT NULL
        );
""",
    # 5: workflows. The tasks of a run by its id (meta trioqueue_run), the
    # fan-in counters, and the end rule: a node that ends KILLED or CANCELLED
    # ends its run and cancels the run's other unfinished tasks, in the
    # statement that ended it (settle, release, rescue or cancel). Meta is read
    # only where it is valid JSON: an unreadable row must not fail a statement.
    f"""\
CREATE INDEX trioqueue_tasks_run ON trioqueue_tasks ({RUN_OF_META})
            WHERE {RUN_OF_META} IS NOT NULL;
CREATE TABLE trioqueue_flow_joins (
            id TEXT PRIMARY KEY NOT NULL,
            run TEXT NOT NULL,
            remaining INTEGER NOT NULL
        ) WITHOUT ROWID;
CREATE INDEX trioqueue_flow_joins_run ON trioqueue_flow_joins (run);
{_node_ended_trigger(RUN_OF_META)}""",
    # 6: listings by status, newest first, without walking every task (a
    # status few or no tasks have, in a store of millions).
    "CREATE INDEX trioqueue_tasks_status ON trioqueue_tasks (status, id);",
    # 7: the earliest waiting task of a queue is read from the claim index
    # (NEXT_RUN_AT): one index fewer to keep up on every push, claim and settle.
    "DROP INDEX IF EXISTS trioqueue_tasks_schedule;",
    # 8: the (status, id) index only for the statuses few tasks have, so that
    # a push, a claim, a start and a done add no entry to it. A listing of
    # another status reads the index that status already has or walks the
    # ids (LIST_TASKS_OF_STATUS).
    """\
DROP INDEX IF EXISTS trioqueue_tasks_status;
CREATE INDEX trioqueue_tasks_status_rare ON trioqueue_tasks (status, id)
            WHERE status IN ('failed', 'killed', 'cancelled');
""",
    # 9: the two partial indexes of three statuses each say so with ORs of
    # equalities (FINISHED, RARE), which SQLite tests with comparisons. An
    # IN list of three or more is a lookup in a temporary table, built once
    # per statement run and probed for every row written: about 1 µs a single
    # insert and 0.4 µs a row of a bulk insert, claim or settle, per index.
    f"""\
DROP INDEX IF EXISTS trioqueue_tasks_finished;
CREATE INDEX trioqueue_tasks_finished ON trioqueue_tasks (finished_at) WHERE {FINISHED};
DROP INDEX IF EXISTS trioqueue_tasks_status_rare;
CREATE INDEX trioqueue_tasks_status_rare ON trioqueue_tasks (status, id) WHERE {RARE};
""",
    # 10: the run index leaves out the empty meta by a comparison of text
    # before it reads the meta as JSON (RUN_SEARCH); the end rule's cascade
    # searches it so.
    f"""\
DROP INDEX IF EXISTS trioqueue_tasks_run;
CREATE INDEX trioqueue_tasks_run ON trioqueue_tasks ({RUN_OF_META})
            WHERE {NOT_EMPTY_META} AND {RUN_OF_META} IS NOT NULL;
DROP TRIGGER IF EXISTS trioqueue_flow_node_ended;
{_node_ended_trigger(RUN_SEARCH)}""",
    # 11: signals between processes. ``cancel`` counts the cancellations
    # requested of claimed tasks (``cancel``, a run's cancel, the end rule):
    # a worker's extender reads this one row after a commit by another
    # process, not the tasks, to learn that one came.
    f"""\
CREATE TABLE trioqueue_signals (
            name TEXT PRIMARY KEY NOT NULL,
            generation INTEGER NOT NULL
        ) WITHOUT ROWID;
INSERT INTO trioqueue_signals (name, generation) VALUES ('cancel', 0);
DROP TRIGGER IF EXISTS trioqueue_flow_node_ended;
{_node_ended_trigger(RUN_SEARCH, signal=True)}""",
    # 12: each queue's retention, stored so that every process applies the
    # same rule: seconds each final status is kept (NULL: forever). A queue
    # without a row follows each process's default.
    """\
CREATE TABLE trioqueue_retention (
            queue TEXT PRIMARY KEY NOT NULL,
            done REAL CHECK (done >= 0),
            killed REAL CHECK (killed >= 0),
            cancelled REAL CHECK (cancelled >= 0)
        ) WITHOUT ROWID;
""",
    # 13: the number of finished tasks per queue and final status (or a
    # status this code does not know), so that ``counts`` reads them instead
    # of counting millions of rows. Triggers keep them on every delete and
    # change of status into or out of those, but for two writes: a held task
    # (a lease token) that becomes DONE, which is every successful settle, is
    # counted once per batch by the settle (``count_settled``), and a task
    # stored already final by its insert (``insert_tasks``): a trigger runs
    # as a program of its own for every row, and these are the hottest
    # writes. The update trigger tests the settle's case first, the cheapest
    # way out. SQLite runs one writer at a time: a counter row per queue and
    # status holds no one up.
    f"""\
CREATE TABLE {FINISHED_COUNTS} (
            queue TEXT NOT NULL,
            status TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (queue, status)
        ) WITHOUT ROWID;
INSERT INTO {FINISHED_COUNTS} (queue, status, n)
SELECT queue, status, count(*) FROM trioqueue_tasks WHERE NOT {_INDEXED}
GROUP BY queue, status;
CREATE TRIGGER trioqueue_finished_delete AFTER DELETE ON trioqueue_tasks
WHEN {_fin("old")}
BEGIN
    {_BUMP.format(rows="VALUES (old.queue, old.status, -1)")}
END;
CREATE TRIGGER trioqueue_finished_update AFTER UPDATE OF status ON trioqueue_tasks
WHEN NOT (new.status = 'done' AND old.lease_token IS NOT NULL) AND old.status <> new.status
    AND ({_fin("old")} OR {_fin("new")})
BEGIN
    {_BUMP.format(rows=f"SELECT old.queue, old.status, -1 WHERE {_fin('old')}")}
    {_BUMP.format(rows=f"SELECT new.queue, new.status, 1 WHERE {_fin('new')}")}
END;
""",
)

#: The schema version this code writes and understands.
SCHEMA_VERSION = len(MIGRATIONS)

SYNCHRONOUS_MODES = ("off", "normal", "full")

#: WAL frames past which a commit on the connection thread checkpoints (SQLite's default).
WAL_AUTOCHECKPOINT = 1000


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock (``SQLITE_BUSY``, any variant)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # before Python 3.11
        return "locked" in str(exc) or "busy" in str(exc)
    return bool(code & 0xFF == sqlite3.SQLITE_BUSY)


@contextmanager
def immediate(conn: Conn, *, full_sync: bool = False) -> Iterator[None]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction: commit, or roll back on error.

    ``full_sync`` makes this commit ``synchronous = FULL`` (then back to NORMAL).
    """
    if full_sync:
        conn.execute("PRAGMA synchronous = FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        if full_sync:
            conn.execute("PRAGMA synchronous = NORMAL")


def parse_bool(name: str, value: object) -> bool:
    """Read a boolean option given as a bool or as URL text (``1/0``, ``true/false``, ``yes/no``).

    Raises:
      ValueError: for anything else.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be a boolean, got {value!r}")


def parse_target(target: str) -> tuple[str, dict[str, str]]:
    """Split a ``sqlite:///path.db?opt=value`` URL (or a plain path) into path and options.

    ``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs.db``
    absolute, ``sqlite://`` or ``sqlite:///:memory:`` a private in-memory database.

    Raises:
      ValueError: for a URL with a host, or of another scheme.
    """
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"a SQLite target must be a URL or a path, got {type(target).__name__}")
    target = os.fspath(target)
    if not target.lower().startswith("sqlite:"):
        return target, {}
    parts = urlsplit(target)
    if parts.scheme.lower() != "sqlite":
        raise ValueError(f"not a SQLite URL: {redact_url(target)!r}")
    if parts.netloc:
        raise ValueError(
            f"a SQLite URL has no host: use sqlite:///relative.db or sqlite:////abs.db, "
            f"got {redact_url(target)!r}"
        )
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    return path or ":memory:", dict(parse_qsl(parts.query))


def open_connection(
    path: str, busy_timeout: float, synchronous: str, migrate: bool
) -> tuple[Conn, str | None]:
    """Open, set up and migrate the database; return it and the file its commits write.

    The connection is left with ``busy_timeout`` and ``wal_autocheckpoint`` at 0
    (the driver sets them around the calls it runs on its connection thread).
    The file is the WAL file in WAL mode, the database file otherwise, None in memory.
    """
    if sqlite3.sqlite_version_info < (3, 35, 0):
        raise BackendError(
            f"trioqueue needs SQLite 3.35 or newer (RETURNING), this Python has "
            f"{sqlite3.sqlite_version}"
        )
    try:
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise BackendError(f"cannot open the SQLite database {path!r}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        watched = None
        if path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                log.warning("%s: journal_mode is %s, not wal", path, mode)
            file = conn.execute("PRAGMA database_list").fetchone()[2]
            watched = file + "-wal" if mode.lower() == "wal" else file
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        migrate_file(conn, path, migrate)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA busy_timeout = 0")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise BackendError(f"cannot open the SQLite database {path!r}: {exc}") from exc
        raise
    return conn, watched or None


def _statements(script: str) -> Iterator[str]:
    # One statement at a time (executescript would commit the open transaction).
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"an incomplete statement ends the script: {pending.strip()[:60]!r}")


def migrate_file(conn: Conn, path: str, migrate: bool) -> None:
    with immediate(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS trioqueue_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT max(version) FROM trioqueue_schema").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise BackendError(
                f"the SQLite database {path!r} has schema version {version}, newer than "
                f"this trioqueue knows ({SCHEMA_VERSION}): upgrade trioqueue"
            )
        if version < SCHEMA_VERSION and not migrate:
            raise BackendError(
                f"the SQLite database {path!r} has schema version {version}, older than "
                f"{SCHEMA_VERSION}: open it with migrate=True"
            )
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            log.info("%s: migrated the schema to version %d", path, step + 1)
        if version < SCHEMA_VERSION:
            conn.execute("DELETE FROM trioqueue_schema")
            conn.execute("INSERT INTO trioqueue_schema (version) VALUES (?)", (SCHEMA_VERSION,))
