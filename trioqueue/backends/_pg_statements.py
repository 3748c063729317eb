"""The PostgreSQL driver's statements, composed once per schema, and their parameters.

Every statement is composed with ``psycopg.sql`` from a schema name that
passed ``check_identifier``; values always travel as parameters. The column
lists come from ``StoredTask``'s fields (``_columns.py``, ``_pg_schema.COLUMNS``).
"""

from __future__ import annotations

import operator
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec
from psycopg import sql

from .._driver import Outcome, StoredTask
from .._task import Status
from ._columns import FIELDS
from ._pg_schema import COLUMNS, check_identifier

__all__ = ["INSERTED", "Statements"]

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
#: The columns an insert writes: a new record has no outcome and no lease yet,
#: so those columns keep the table's defaults (NULL), and the statement sends
#: six arrays fewer.
INSERTED = tuple(
    n
    for n in FIELDS
    if n
    not in ("last_error", "result", "finished_at", "lease_token", "lease_expires_at", "traceback")
)
_ARRAYS = ", ".join(f"%({name})s::{_pg_type(_HINTS[name])}[]" for name in INSERTED)
_VALUES = ", ".join(f"{n}::{_CASTS[n]}" if n in _CASTS else n for n in INSERTED)
#: ``%s, ..., %s::jsonb``: one scalar parameter per column, for a single record.
_PLACEHOLDERS = ", ".join(f"%s::{_CASTS[n]}" if n in _CASTS else "%s" for n in INSERTED)
#: The inserted columns of one record, converted as ``COLUMNS`` converts them.
_ONE = operator.attrgetter(*INSERTED)
_ONE_CONVERT = tuple(
    (i, convert) for i, n in enumerate(INSERTED) if (convert := COLUMNS.to_db(n)) is not None
)


class Statements:
    """The driver's statements, composed once for one schema and wake-up channel."""

    def __init__(self, schema: str) -> None:
        s = sql.Identifier(check_identifier(schema))
        #: The NOTIFY channel; the payload is a queue name, never task data.
        self.channel = f"trioqueue.{schema}"
        # meta is read as text and decoded row by row (``COLUMNS``).
        cols = sql.SQL(", ".join("meta::text" if c == "meta" else c for c in COLUMNS.names))
        tcols = sql.SQL(
            ", ".join("t.meta::text" if c == "meta" else f"t.{c}" for c in COLUMNS.names)
        )
        arrays, values = sql.SQL(_ARRAYS), sql.SQL(_VALUES)
        icols = sql.SQL(", ".join(INSERTED))
        placeholders = sql.SQL(_PLACEHOLDERS)

        def q(text: str) -> str:
            # Composed once into text: psycopg then caches its conversion, where
            # a ``Composed`` would be rendered again on every execution.
            return (
                sql.SQL(text)
                .format(
                    s=s,
                    cols=cols,
                    tcols=tcols,
                    icols=icols,
                    arrays=arrays,
                    values=values,
                    placeholders=placeholders,
                )
                .as_string(None)
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
        # One record (a lone push): scalar parameters cost far less to send than
        # one-element arrays. Params: ``insert_one_params(task)``.
        self.insert_one = q(
            """WITH ins AS (
                INSERT INTO {s}.tasks ({icols}) VALUES ({placeholders})
                ON CONFLICT (id) DO NOTHING
                RETURNING queue)
            SELECT count(*), count(pg_notify(%s, queue)) FROM ins"""
        )
        # ``= ANY(ARRAY(...))``: the claimed ids are looked up by primary key;
        # a join with ``c`` lets the planner hash the whole table instead.
        # Params: the rows of ``copy_rows(tasks)``, through ``Runner.copy_in``.
        self.copy = q("COPY {s}.tasks ({icols}) FROM STDIN")
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
        self.start = q(
            "UPDATE {s}.tasks t SET status = 'running' WHERE " + held + " AND t.status = 'queued'"
        )
        self.extend = q(
            "UPDATE {s}.tasks t SET lease_expires_at = %(expires)s WHERE "
            + held
            + " AND t.status IN ('queued', 'running') RETURNING t.id"
        )
        self.release = q(
            """WITH u AS (UPDATE {s}.tasks t
                SET status = 'pending', attempts = greatest(0, t.attempts - 1),
                    lease_token = NULL, lease_expires_at = NULL
                WHERE """
            + held
            + """ AND t.status IN ('queued', 'running') RETURNING t.queue),
            n AS (SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM u) d)
            SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"""
        )
        # Params: ``settle_params(outcomes, ...)``: the outcomes travel as one JSON
        # array (results in hex), far cheaper to send than five arrays.
        self.settle = q(
            """WITH o AS (
                SELECT DISTINCT ON (id) x->>0 AS id, x->>1 AS status,
                    decode(x->>2, 'hex') AS result, x->>3 AS error, (x->>4)::float8 AS delay,
                    x->>5 AS traceback
                FROM json_array_elements(%(outcomes)s::json) AS x),
            u AS (UPDATE {s}.tasks t SET
                status = CASE WHEN o.status = 'failed' AND t.attempts >= t.max_attempts
                              THEN 'killed' ELSE o.status END,
                result = CASE WHEN o.status = 'done' THEN o.result ELSE t.result END,
                last_error = CASE WHEN o.status = 'done' AND o.error IS NULL
                                  THEN t.last_error ELSE o.error END,
                traceback = CASE WHEN o.status = 'done' THEN t.traceback ELSE o.traceback END,
                run_at = CASE WHEN o.status = 'failed' AND t.attempts < t.max_attempts
                              THEN %(now)s + greatest(0.0, o.delay) ELSE t.run_at END,
                finished_at = CASE WHEN o.status = 'failed' AND t.attempts < t.max_attempts
                                   THEN t.finished_at ELSE %(now)s END,
                lease_token = NULL, lease_expires_at = NULL
                FROM o WHERE t.id = o.id AND t.id = ANY(ARRAY(SELECT id FROM o))
                  AND t.lease_token = %(token)s AND t.status IN ('queued', 'running')
                RETURNING t.id, t.queue, t.status),
            n AS (SELECT pg_notify(%(channel)s, q)
                  FROM (SELECT DISTINCT queue AS q FROM u WHERE status = 'failed') d)
            SELECT (SELECT json_agg(id) FROM u), (SELECT count(*) FROM n)"""
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
        # The earliest run_at of a queue's waiting tasks, read from the claim
        # index alone: one probe per distinct priority (a loose index scan),
        # so no second index has to be kept up to date on every insert.
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
            FROM p WHERE p.priority IS NOT NULL"""
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
        self.queues_of = q(
            "SELECT id, queue, status FROM {s}.tasks WHERE id = ANY(%(ids)s::text[])"
        )
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
            )
            for o in outcomes
        ]
        return {
            "outcomes": msgspec.json.encode(rows).decode(),
            "token": token,
            "now": now,
            "channel": self.channel,
        }

    def copy_rows(self, tasks: Iterable[StoredTask]) -> Iterator[list[Any]]:
        """Yield the rows ``copy`` takes for ``tasks``: the inserted columns, converted.

        Lazily: the COPY sends the first rows while the next are converted.
        """
        for t in tasks:
            values = list(_ONE(t))
            for i, convert in _ONE_CONVERT:
                values[i] = convert(values[i])
            yield values

    def notify(self, queues: Iterable[str]) -> str:
        """Return the statement that wakes the workers of ``queues`` (values inlined)."""
        channel = sql.Literal(self.channel)
        calls = sql.SQL(", ").join(
            sql.SQL("pg_notify({}, {})").format(channel, sql.Literal(q)) for q in sorted(queues)
        )
        return sql.SQL("SELECT {}").format(calls).as_string(None)

    def insert_one_params(self, task: StoredTask) -> list[Any]:
        """Return the parameters of ``insert_one`` for ``task``, in column order."""
        (values,) = self.copy_rows((task,))
        values.append(self.channel)
        return values
