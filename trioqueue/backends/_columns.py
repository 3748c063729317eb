"""``StoredTask`` as table columns: rows made from records and records read from rows.

A SQL backend stores one column per field of ``StoredTask``, named as the
field, in the field order. Where its storage type differs from Python's (a
``Status`` stored as text, ``meta`` as JSON), the backend names a converter
for that field; every other value passes unchanged.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from .._driver import StoredTask
from .._task import Status

__all__ = ["FIELDS", "Columns", "meta_json", "nullable", "status_text"]

#: The column names: ``StoredTask``'s fields, in order.
FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StoredTask))

Convert = Callable[[Any], Any]

#: A ``Status``'s stored text, by dict lookup (an enum's ``.value`` costs a
#: descriptor call per row).
status_text: Convert = {s: s.value for s in Status}.__getitem__


def meta_json(meta: Mapping[str, Any]) -> str:
    """Return ``meta`` as JSON text (the empty one, most tasks', without encoding)."""
    return msgspec.json.encode(dict(meta)).decode() if meta else "{}"


def nullable(convert: Convert) -> Convert:
    """Return ``convert`` for a nullable column: None (NULL) passes unconverted."""

    def maybe(value: Any) -> Any:
        return None if value is None else convert(value)

    return maybe


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
