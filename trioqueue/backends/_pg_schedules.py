"""The PostgreSQL driver's schedules: one row per schedule (``PostgresDriver`` inherits them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._schedule._record import SCHEDULE_FIELDS, ScheduleRecord
from ._pg_native import Row
from ._pg_statements import composer

__all__ = ["PostgresSchedules"]

_COLUMNS = ", ".join(f'"{f}"' for f in SCHEDULE_FIELDS)
# An upsert whose last tick is older than the stored one changes nothing (NULL is oldest).
_UPSERT = (
    f"INSERT INTO {{s}}.schedules AS r ({_COLUMNS}) "
    f"VALUES ({', '.join(f'%({f})s' for f in SCHEDULE_FIELDS)}) "
    "ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f'"{f}" = EXCLUDED."{f}"' for f in SCHEDULE_FIELDS if f != "name")
    + " WHERE EXCLUDED.last_tick IS NOT NULL AND (r.last_tick IS NULL "
    "OR EXCLUDED.last_tick >= r.last_tick) "
    "OR EXCLUDED.last_tick IS NULL AND r.last_tick IS NULL"
)
_SELECT = f"SELECT {_COLUMNS} FROM {{s}}.schedules ORDER BY name"
_FORGET = (
    "DELETE FROM {s}.schedules WHERE name = %(name)s AND updated_at <= %(updated_at)s "
    "RETURNING name"
)


class PostgresSchedules:
    """``record_schedule``, ``schedules``, ``forget_schedule`` of ``PostgresDriver``.

    One statement each.
    """

    schema: str

    if TYPE_CHECKING:

        def now(self) -> float: ...

        async def _fetch(
            self, query: Any, params: Any, *, shield: bool, durable: bool = True
        ) -> list[Row]: ...

    def _schedule_sql(self) -> tuple[str, str, str]:
        found: tuple[str, str, str] | None = self.__dict__.get("_schedule_statements")
        if found is None:
            q = composer(self.schema)
            found = (q(_UPSERT), q(_SELECT), q(_FORGET))
            self.__dict__["_schedule_statements"] = found
        return found

    async def record_schedule(self, rec: ScheduleRecord) -> None:
        """Upsert a schedule by name; one whose last tick is older changes nothing."""
        params = {f: getattr(rec, f) for f in SCHEDULE_FIELDS}
        params["updated_at"] = self.now()
        await self._fetch(self._schedule_sql()[0], params, shield=True, durable=False)

    async def schedules(self) -> list[ScheduleRecord]:
        """Return the schedules' records, by name."""
        rows = await self._fetch(self._schedule_sql()[1], None, shield=False)
        out = []
        for n, q, e, i, tz, last, nxt, at in rows:
            expr = None if e is None else str(e)
            out.append(ScheduleRecord(str(n), str(q), expr, _float(i), str(tz), _float(last)))
            out[-1].next_tick, out[-1].updated_at = _float(nxt), float(str(at))
        return out

    async def forget_schedule(self, name: str, updated_at: float) -> bool:
        """Delete the record ``name`` unless it was written after ``updated_at``."""
        params = {"name": name, "updated_at": updated_at}
        rows = await self._fetch(self._schedule_sql()[2], params, shield=True, durable=False)
        return bool(rows)


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))
