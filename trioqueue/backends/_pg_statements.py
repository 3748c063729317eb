"""The PostgreSQL driver's statements, composed once per schema, and their parameters.

Every statement is composed with ``psycopg.sql`` from a schema name that
passed ``check_identifier``; values always travel as parameters. The column
lists come from ``StoredTask``'s fields (``_columns.py``, ``_pg_schema.COLUMNS``).
"""

from __future__ import annotations

import hashlib
import operator
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from psycopg import sql

from .._driver import CANCEL_REQUESTED, Outcome, StoredTask
from .._task import Status
from ._columns import FIELDS
from ._pg_copy import COPIED
from ._pg_schema import COLUMNS, check_identifier

__all__ = ["INSERTED", "PAYLOAD", "Statements", "channel_name", "composer"]

#: The PostgreSQL type a Python field type travels as (in the insert's arrays).
_PG_TYPES: dict[type, str] = {
    str: "text",
    bytes: "bytea",
    int: "bigint",
    float: "float8",
    bool: "boolean",
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
#: The columns an insert writes: a new record has no outcome, no lease and no
#: attempt yet, so those columns keep the table's defaults (NULL, 0, false),
#: and the statement sends eleven arrays fewer.
NOT_INSERTED = (
    "last_error",
    "result",
    "finished_at",
    "lease_token",
    "lease_expires_at",
    "traceback",
    "started_at",
    "worker",
    "progress",
    "snoozes",
    "cancel_requested",
)
INSERTED = tuple(n for n in FIELDS if n not in NOT_INSERTED)
_ARRAYS = ", ".join(f"%({name})s::{_pg_type(_HINTS[name])}[]" for name in INSERTED)
_VALUES = ", ".join(f"{n}::{_CASTS[n]}" if n in _CASTS else n for n in INSERTED)
#: ``%s, ..., %s::jsonb``: one scalar parameter per column, for a single record.
_PLACEHOLDERS = ", ".join(f"%s::{_CASTS[n]}" if n in _CASTS else "%s" for n in INSERTED)
#: The inserted columns of one record, converted as ``COLUMNS`` converts them.
_ONE = operator.attrgetter(*INSERTED)
_ONE_CONVERT = tuple(
    (i, convert) for i, n in enumerate(INSERTED) if (convert := COLUMNS.to_db(n)) is not None
)


def channel_name(*parts: str) -> str:
    """Return the NOTIFY channel ``trioqueue.<parts joined by '.'>``, at most 63 bytes long.

    A longer name is replaced by a digest of it: ``pg_notify`` refuses a
    channel name of 64 bytes or more, and LISTEN would truncate it.
    """
    name = ".".join(("trioqueue", *parts))
    if len(name.encode()) <= 63:
        return name
    return "trioqueue." + hashlib.blake2b(name.encode(), digest_size=20).hexdigest()


def composer(schema: str) -> Callable[[str], str]:
    """Return a function composing statement text for ``schema``.

    It fills ``{s}`` (the schema), ``{cols}``/``{tcols}`` (every column, for
    ``SELECT``/``RETURNING``), ``{icols}``, ``{arrays}``, ``{values}``,
    ``{placeholders}`` (the inserted columns) and ``{cancel_requested}``
    (``CANCEL_REQUESTED`` as a literal).
    """
    s = sql.Identifier(check_identifier(schema))
    # meta is read as text and decoded row by row (``COLUMNS``).
    cols = sql.SQL(", ".join("meta::text" if c == "meta" else c for c in COLUMNS.names))
    tcols = sql.SQL(", ".join("t.meta::text" if c == "meta" else f"t.{c}" for c in COLUMNS.names))
    parts = {
        "s": s,
        "cols": cols,
        "tcols": tcols,
        "icols": sql.SQL(", ".join(INSERTED)),
        "arrays": sql.SQL(_ARRAYS),
        "values": sql.SQL(_VALUES),
        "placeholders": sql.SQL(_PLACEHOLDERS),
        "cancel_requested": sql.Literal(CANCEL_REQUESTED),
    }

    def q(text: str) -> str:
        # Composed once into text: psycopg then caches its conversion, where
        # a ``Composed`` would be rendered again on every execution.
        return sql.SQL(text).format(**parts).as_string(None)

    return q


#: A notification payload: the JSON array ``j`` of ids, or '' when it would not
#: fit in PostgreSQL's 8000 bytes (the listeners then look at everything).
PAYLOAD = "CASE WHEN octet_length(j::text) < 8000 THEN j::text ELSE '' END"


class Statements:
    """The worker's statements, composed once for one schema, and the NOTIFY channels."""

    def __init__(self, schema: str) -> None:
        #: The wake-up channel; its payload is a queue name, never task data.
        self.channel = channel_name(schema)
        #: The channel of status and progress changes (settle, cancel, progress
        #: writes); its payload is a JSON array of task ids.
        self.change_channel = channel_name(schema, "change")
        #: The channel of cancellations requested for QUEUED or RUNNING tasks
        #: (a JSON array of their ids): their workers stop them.
        self.cancel_channel = channel_name(schema, "cancel")
        q = composer(schema)

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
        # One record (a lone push): scalar parameters cost far less to send than
        # one-element arrays, and a plain INSERT less than one in a CTE. One
        # row back if it was stored (its NOTIFY sent), none if the id was
        # taken. Params: ``insert_one_params(task)``.
        self.insert_one = q(
            """INSERT INTO {s}.tasks ({icols}) VALUES ({placeholders})
            ON CONFLICT (id) DO NOTHING
            RETURNING pg_notify(%s, queue)"""
        )
        # ``= ANY(ARRAY(...))``: the claimed ids are looked up by primary key;
        # a join with ``c`` lets the planner hash the whole table instead.
        # Data: ``binary_copy(tasks)``, through ``Runner.copy_in``.
        self.copy = q(f"COPY {{s}}.tasks ({', '.join(COPIED)}) FROM STDIN (FORMAT binary)")
        # A paused queue gives nothing: the uncorrelated NOT EXISTS is a
        # one-time filter, one probe of a tiny table per claim.
        self.claim = q(
            """WITH c AS (
                SELECT id FROM {s}.tasks
                WHERE queue = %(queue)s AND status IN ('pending', 'failed') AND run_at <= %(now)s
                  AND NOT EXISTS (SELECT 1 FROM {s}.paused_queues WHERE queue = %(queue)s)
                ORDER BY priority DESC, run_at, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED)
            UPDATE {s}.tasks t
            SET status = 'queued', attempts = t.attempts + 1,
                lease_token = %(token)s, lease_expires_at = %(expires)s, worker = %(worker)s::text
            WHERE t.id = ANY(ARRAY(SELECT id FROM c))
            RETURNING {tcols}"""
        )
        # Lock the held rows in id order first: concurrent batches of one
        # consumer (settler and extender) then never deadlock each other.
        # Each statement below writes only rows still held under the caller's
        # lease (compare-and-set: the condition is checked again on a row whose
        # lock it waited for), looked up by primary key. No separate locking
        # pass: a row lock costs a write of its own. Batches of one consumer
        # touch disjoint ids (the consumer keeps settling ids out of extends).
        held = "t.id = ANY(%(ids)s::text[]) AND t.lease_token = %(token)s"
        leased = " AND t.status IN ('queued', 'running')"
        self.start = q(
            "UPDATE {s}.tasks t SET status = 'running', started_at = %(now)s WHERE "
            + held
            + " AND t.status = 'queued'"
        )
        self.extend = q(
            "UPDATE {s}.tasks t SET lease_expires_at = %(expires)s WHERE "
            + held
            + leased
            + " RETURNING t.id, t.cancel_requested"
        )
        # Progress (JSON text, NULL for none) travels aligned with the ids; the
        # ids whose progress was stored go to the change channel.
        self.extend_progress = q(
            """WITH p AS (SELECT * FROM unnest(%(ids)s::text[], %(progress)s::text[]) AS p(id, v)),
            u AS (UPDATE {s}.tasks t SET lease_expires_at = %(expires)s,
                    progress = coalesce(p.v, t.progress)
                FROM p WHERE t.id = p.id AND t.id = ANY(%(ids)s::text[])
                  AND t.lease_token = %(token)s"""
            + leased
            + """ RETURNING t.id, t.cancel_requested, p.v IS NOT NULL AS progressed),
            ids AS (SELECT json_agg(id) AS j FROM u WHERE progressed),
            c AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM ids WHERE j IS NOT NULL)
            SELECT id, cancel_requested, (SELECT count(*) FROM c) FROM u"""
        )
        # A task whose cancellation was requested ends CANCELLED instead.
        self.release = q(
            """WITH u AS (UPDATE {s}.tasks t SET
                status = CASE WHEN t.cancel_requested THEN 'cancelled' ELSE 'pending' END,
                attempts = CASE WHEN t.cancel_requested THEN t.attempts
                                ELSE greatest(0, t.attempts - 1) END,
                last_error = CASE WHEN t.cancel_requested THEN {cancel_requested}
                                  ELSE t.last_error END,
                finished_at = CASE WHEN t.cancel_requested THEN %(now)s ELSE t.finished_at END,
                cancel_requested = false, lease_token = NULL, lease_expires_at = NULL
                WHERE """
            + held
            + leased
            + """ RETURNING t.id, t.queue, t.status),
            n AS (SELECT pg_notify(%(channel)s, q)
                  FROM (SELECT DISTINCT queue AS q FROM u WHERE status = 'pending') d),
            ids AS (SELECT json_agg(id) AS j FROM u),
            c AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM ids WHERE j IS NOT NULL)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n), (SELECT count(*) FROM c)"""
        )
        # ``l``: the tasks made DONE, per queue, to the ledger of finished
        # counts (the trigger leaves a held task made DONE to this statement:
        # one row a batch, not a trigger call a row).
        # Params: ``settle_params(outcomes, ...)``: the outcomes travel as one JSON
        # array (results in hex), far cheaper to send than eight arrays. The
        # rules are ``apply_outcome``'s: ``r`` (a cancellation was requested:
        # CANCELLED whatever the outcome) comes first, then a snooze (PENDING)
        # or a failure with attempts left (``again``: scheduled, not final).
        r = "t.cancel_requested"
        again = (
            f"(NOT {r} AND (o.status = 'pending' OR "
            "(o.status = 'failed' AND t.attempts < t.max_attempts)))"
        )
        snooze = f"(NOT {r} AND o.status = 'pending')"
        self.settle = q(
            """WITH o AS (
                SELECT DISTINCT ON (id) x->>0 AS id, x->>1 AS status,
                    decode(x->>2, 'hex') AS result, x->>3 AS error, (x->>4)::float8 AS delay,
                    x->>5 AS traceback, (x->>6)::float8 AS started_at, x->>7 AS progress
                FROM json_array_elements(%(outcomes)s::json) AS x),
            u AS (UPDATE {s}.tasks t SET
                status = CASE WHEN """
            + r
            + """ THEN 'cancelled'
                              WHEN o.status = 'failed' AND t.attempts >= t.max_attempts
                              THEN 'killed' ELSE o.status END,
                result = CASE WHEN NOT """
            + r
            + """ AND o.status = 'done' THEN o.result ELSE t.result END,
                last_error = CASE WHEN """
            + r
            + """ THEN coalesce(o.error, {cancel_requested})
                                  WHEN o.status = 'done' THEN coalesce(o.error, t.last_error)
                                  WHEN o.status = 'pending' THEN t.last_error
                                  ELSE o.error END,
                traceback = CASE WHEN NOT """
            + r
            + """ AND o.status IN ('done', 'pending')
                                 THEN t.traceback ELSE o.traceback END,
                attempts = CASE WHEN """
            + snooze
            + """ THEN greatest(0, t.attempts - 1) ELSE t.attempts END,
                snoozes = CASE WHEN """
            + snooze
            + """ THEN t.snoozes + 1 ELSE t.snoozes END,
                run_at = CASE WHEN """
            + again
            + """ THEN %(now)s + greatest(0.0, o.delay) ELSE t.run_at END,
                finished_at = CASE WHEN """
            + again
            + """ THEN t.finished_at ELSE %(now)s END,
                started_at = coalesce(o.started_at, t.started_at),
                progress = coalesce(o.progress, t.progress),
                cancel_requested = false, lease_token = NULL, lease_expires_at = NULL
                FROM o WHERE t.id = o.id AND t.id = ANY(ARRAY(SELECT id FROM o))
                  AND t.lease_token = %(token)s AND t.status IN ('queued', 'running')
                RETURNING t.id, t.queue, t.status),
            l AS (INSERT INTO {s}.finished_counts (queue, status, n)
                  SELECT queue, 'done', count(*) FROM u WHERE status = 'done' GROUP BY queue),
            n AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM u
                  WHERE status IN ('failed', 'pending')) d),
            ids AS (SELECT json_agg(id) AS j FROM u),
            c AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM ids WHERE j IS NOT NULL)
            SELECT (SELECT j FROM ids), (SELECT count(*) FROM n), (SELECT count(*) FROM c)"""
        )
        self.rescue = q(
            """WITH e AS (
                SELECT id FROM {s}.tasks
                WHERE status IN ('queued', 'running') AND lease_expires_at <= %(now)s
                  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
                ORDER BY id FOR UPDATE SKIP LOCKED),
            u AS (UPDATE {s}.tasks t SET
                status = CASE WHEN t.cancel_requested THEN 'cancelled'
                              WHEN t.attempts >= t.max_attempts THEN 'killed' ELSE 'failed' END,
                last_error = CASE WHEN t.cancel_requested THEN {cancel_requested}
                    WHEN t.attempts >= t.max_attempts
                    THEN format('lease expired on attempt %%s of %%s', t.attempts, t.max_attempts)
                    ELSE format('lease expired on attempt %%s', t.attempts) END,
                run_at = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts
                              THEN t.run_at ELSE %(now)s END,
                finished_at = CASE WHEN t.cancel_requested OR t.attempts >= t.max_attempts
                                   THEN %(now)s ELSE t.finished_at END,
                cancel_requested = false, lease_token = NULL, lease_expires_at = NULL
                FROM e WHERE t.id = e.id
                RETURNING t.id, t.queue, t.status),
            n AS (SELECT pg_notify(%(channel)s, q)
                  FROM (SELECT DISTINCT queue AS q FROM u WHERE status = 'failed') d),
            ids AS (SELECT json_agg(id) AS j FROM u),
            c AS (SELECT pg_notify(%(change)s, """
            + PAYLOAD
            + """) FROM ids WHERE j IS NOT NULL)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n), (SELECT count(*) FROM c)"""
        )
        # The earliest run_at of a queue's waiting tasks, read from the claim
        # index alone: one probe per distinct priority (a loose index scan),
        # so no second index has to be kept up to date on every insert. None
        # (NULL) for a paused queue.
        self.next_run_at = q(
            """WITH RECURSIVE p(priority) AS (
                (SELECT priority FROM {s}.tasks
                 WHERE queue = %(queue)s AND status IN ('pending', 'failed')
                 ORDER BY priority DESC LIMIT 1)
                UNION ALL
                SELECT (SELECT t.priority FROM {s}.tasks t
                        WHERE t.queue = %(queue)s AND t.status IN ('pending', 'failed')
                          AND t.priority < p.priority
                        ORDER BY t.priority DESC LIMIT 1)
                FROM p WHERE p.priority IS NOT NULL)
            SELECT min((SELECT t.run_at FROM {s}.tasks t
                        WHERE t.queue = %(queue)s AND t.status IN ('pending', 'failed')
                          AND t.priority = p.priority
                        ORDER BY t.run_at LIMIT 1))
            FROM p WHERE p.priority IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM {s}.paused_queues WHERE queue = %(queue)s)"""
        )

    def insert_params(self, tasks: Sequence[StoredTask]) -> dict[str, Any]:
        """Return the parameters of ``insert`` for ``tasks``: one array per column."""
        params: dict[str, Any] = COLUMNS.arrays(tasks, INSERTED)
        params["channel"] = self.channel
        return params

    def settle_params(self, outcomes: Sequence[Outcome], token: str, now: float) -> dict[str, Any]:
        """Return the parameters of ``settle``."""
        rows = [
            (
                str(o.id),  # maybe a TaskId: msgspec encodes plain str only
                o.status.value,
                None if o.result is None else o.result.hex(),
                o.error,
                float(o.delay),
                o.traceback,
                None if o.started_at is None else float(o.started_at),
                o.progress,
            )
            for o in outcomes
        ]
        return {
            "outcomes": msgspec.json.encode(rows).decode(),
            "token": token,
            "now": now,
            "channel": self.channel,
            "change": self.change_channel,
        }

    def insert_one_values(self, task: StoredTask) -> list[Any]:
        """Return the inserted columns of ``task``, converted as ``COLUMNS`` converts them."""
        values = list(_ONE(task))
        for i, convert in _ONE_CONVERT:
            values[i] = convert(values[i])
        return values

    def notify(self, queues: Iterable[str]) -> str:
        """Return the statement that wakes the workers of ``queues`` (values inlined)."""
        channel = sql.Literal(self.channel)
        calls = sql.SQL(", ").join(
            sql.SQL("pg_notify({}, {})").format(channel, sql.Literal(q)) for q in sorted(queues)
        )
        return sql.SQL("SELECT {}").format(calls).as_string(None)

    def insert_one_params(self, task: StoredTask) -> list[Any]:
        """Return the parameters of ``insert_one`` for ``task``, in column order."""
        values = self.insert_one_values(task)
        values.append(self.channel)
        return values
