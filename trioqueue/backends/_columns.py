"""``StoredTask`` as table columns: rows made from records and records read from rows.

A SQL backend stores one column per field of ``StoredTask``, named as the
field, in the field order. Where its storage type differs from Python's (a
``Status`` stored as text, ``meta`` as JSON), the backend names a converter
for that field; every other value passes unchanged.

A row that does not convert (a payload stored as text, a meta that is not a
JSON object, an unknown status) fails alone: a claim settles it KILLED with
the reason ``unreadable row: ...`` (``claimed``) and a listing shows what it
could read (``shown``).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from .._driver import Outcome, StoredTask
from .._outcome import bounded, reason
from .._task import Status

__all__ = [
    "FIELDS",
    "TEXT_COLUMNS",
    "UNREADABLE",
    "Columns",
    "json_object",
    "meta_json",
    "meta_or_none",
    "nullable",
    "status_of",
    "status_text",
]

#: How the reason of a row that cannot be read starts.
UNREADABLE = "unreadable row"

#: The column names: ``StoredTask``'s fields, in order.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StoredTask))

Convert = Callable[[Any], Any]

#: A ``Status``'s stored text, by dict lookup (an enum's ``.value`` costs a
#: descriptor call per row).
status_text: Convert = {s: s.value for s in Status}.__getitem__


def meta_json(meta: Mapping[str, Any]) -> str:
    """Return ``meta`` as JSON text (the empty one, most tasks', without encoding)."""
    return msgspec.json.encode(dict(meta)).decode() if meta else "{}"


def meta_or_none(text: str | None) -> dict[str, Any] | None:
    """Return a stored ``meta`` text as a dict; None when empty or not a JSON object."""
    if not text or text == "{}":
        return None
    try:
        meta = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None
    return meta if isinstance(meta, dict) else None


def nullable(convert: Convert) -> Convert:
    """Return ``convert`` for a nullable column: None (NULL) passes unconverted."""

    def maybe(value: Any) -> Any:
        return None if value is None else convert(value)

    return maybe


def json_object(decode: Convert) -> Convert:
    """Return ``decode`` (JSON text to a value) checked to give a JSON object (a ``meta``)."""

    def read(value: Any) -> dict[str, Any]:
        out = decode(value)
        if not isinstance(out, dict):
            raise ValueError(f"a JSON object was expected, not {type(out).__name__}")
        return out

    return read


_STATUSES = {s.value: s for s in Status}


def status_of(value: Any) -> Status:
    """Return the ``Status`` a stored status stands for; an unknown one is KILLED.

    No claim picks a row of an unknown status up, so it never runs: it is
    counted and listed as KILLED (a listing says why in ``last_error``).
    """
    return _STATUSES.get(value, Status.KILLED)


_STATUS = FIELDS.index("status")

# What a listing shows for a field it cannot read.
_PLACEHOLDERS: dict[str, Convert] = {
    "payload": lambda v: v.encode("utf-8", "backslashreplace") if isinstance(v, str) else b"",
    "status": status_of,
    "meta": lambda v: {},
    "result": lambda v: None,
}


class Columns:
    """How one backend turns ``StoredTask`` records into rows and back.

    Example::

        COLUMNS = Columns(
            to_db={"status": operator.attrgetter("value")},
            from_db={"status": Status, "result": nullable(bytes)},
        )
        sql = f"SELECT {COLUMNS.select} FROM tasks"

    Args:
      to_db: Converters by field name for values on their way into storage.
      from_db: Converters by field name for column values read back (a
        nullable column's converter sees NULL as None: wrap it in ``nullable``).

    Raises:
      ValueError: if a converter names a field ``StoredTask`` does not have.
    """

    __slots__ = ("_all", "_by_column", "_from", "_to", "names", "select")

    def __init__(
        self,
        *,
        to_db: Mapping[str, Convert] | None = None,
        from_db: Mapping[str, Convert] | None = None,
    ) -> None:
        to_db, from_db = to_db or {}, from_db or {}
        unknown = (to_db.keys() | from_db.keys()) - set(FIELDS)
        if unknown:
            raise ValueError(f"not fields of StoredTask: {sorted(unknown)}")
        #: The column names, in field order.
        self.names = FIELDS
        #: The names as a SQL list (``"id, queue, ..."``).
        self.select = ", ".join(FIELDS)
        # Only the converted positions are visited: reading a row stays cheap.
        self._from = tuple((i, from_db[n]) for i, n in enumerate(FIELDS) if n in from_db)
        self._by_column = tuple((n, operator.attrgetter(n), to_db.get(n)) for n in FIELDS)
        self._all = operator.attrgetter(*FIELDS)  # every field as a tuple, in one call
        self._to = tuple((i, to_db[n]) for i, n in enumerate(FIELDS) if n in to_db)

    def to_db(self, name: str) -> Convert | None:
        """Return the converter of field ``name`` on its way into storage, or None."""
        return next((convert for n, _, convert in self._by_column if n == name), None)

    def arrays(
        self, tasks: Sequence[StoredTask], names: Sequence[str] | None = None
    ) -> dict[str, list[Any]]:
        """Return each column's values across ``tasks``, by column name (one array each).

        Args:
          tasks: The records.
          names: Only these columns (default: every one).
        """
        out: dict[str, list[Any]] = {}
        for name, get, convert in self._by_column:
            if names is not None and name not in names:
                continue
            values = list(map(get, tasks))
            out[name] = values if convert is None else list(map(convert, values))
        return out

    def rows(self, tasks: Sequence[StoredTask]) -> list[Sequence[Any]]:
        """Return the rows of ``tasks``: their column values in column order, converted."""
        get, to = self._all, self._to
        rows: list[Sequence[Any]] = []
        for t in tasks:
            row = list(get(t))
            for i, convert in to:
                row[i] = convert(row[i])
            rows.append(row)
        return rows

    def record(self, row: Sequence[Any]) -> StoredTask:
        """Return the record a row of every column (in column order) stands for."""
        values = list(row)
        for i, convert in self._from:
            values[i] = convert(values[i])
        return StoredTask(*values)

    def _why(self, row: Sequence[Any]) -> tuple[list[Any], str]:
        # Field by field: the values that convert, placeholders for the others,
        # and the reason naming each field at fault.
        values, faults = list(row), []
        for i, convert in self._from:
            try:
                values[i] = convert(values[i])
            except Exception as exc:
                faults.append(f"{FIELDS[i]}: {reason(exc)}")
                values[i] = _PLACEHOLDERS.get(FIELDS[i], lambda v: v)(values[i])
        return values, bounded(f"{UNREADABLE}: {'; '.join(faults) or 'unknown fault'}")

    def claimed(self, rows: Sequence[Sequence[Any]]) -> tuple[list[StoredTask], list[Outcome]]:
        """Return the records of rows a claim returned, and a KILLED outcome per unreadable row.

        The caller settles the outcomes under the claim's lease, so one row
        that cannot be read never holds up the rest of its batch.
        """
        out: list[StoredTask] = []
        bad: list[Outcome] = []
        for row in rows:
            try:
                out.append(self.record(row))
            except Exception:
                bad.append(Outcome(row[0], Status.KILLED, error=self._why(row)[1]))
        return out, bad

    def shown(self, row: Sequence[Any]) -> StoredTask:
        """Return the record of a row for a listing, even when some fields cannot be read.

        Such a field gets a placeholder (an empty payload or meta, the status
        KILLED) and ``last_error`` says what could not be read.
        """
        try:
            rec = self.record(row)
        except Exception:
            values, why = self._why(row)
            rec = StoredTask(*values)
            rec.last_error = why
        else:
            if rec.status is Status.KILLED and row[FIELDS.index("status")] != "killed":
                rec.last_error = bounded(f"{UNREADABLE}: unknown status {row[_STATUS]!r}")
        return rec


#: The columns of a SQL table that stores a status as its text and ``meta`` as
#: JSON text (the SQLite and PostgreSQL tables): ``meta`` is decoded row by row,
#: so one that does not decode fails its own row alone.
TEXT_COLUMNS = Columns(
    to_db={"status": status_text, "meta": meta_json},
    from_db={
        "payload": bytes,
        "status": status_of,
        "meta": json_object(msgspec.json.decode),
        "result": nullable(bytes),
        "cancel_requested": bool,  # SQLite stores 0 or 1
    },
)
