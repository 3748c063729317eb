"""The SQLite driver's schedules: one row per schedule (``SqliteDriver`` inherits them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._schedule._record import SCHEDULE_FIELDS, ScheduleRecord
from ._sqlite_thread import Connection

__all__ = ["SqliteSchedules"]

T = TypeVar("T")

_COLUMNS = ", ".join(SCHEDULE_FIELDS)
# An upsert whose last tick is older than the stored one changes nothing (NULL is oldest).
_UPSERT = (
    f"INSERT INTO trioqueue_schedules ({_COLUMNS}) "
    f"VALUES ({', '.join(':' + f for f in SCHEDULE_FIELDS)}) "
    "ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in SCHEDULE_FIELDS if f != "name")
    + " WHERE excluded.last_tick IS NOT NULL AND (trioqueue_schedules.last_tick IS NULL "
    "OR excluded.last_tick >= trioqueue_schedules.last_tick) "
    "OR excluded.last_tick IS NULL AND trioqueue_schedules.last_tick IS NULL"
)
_SELECT = f"SELECT {_COLUMNS} FROM trioqueue_schedules ORDER BY name"
_FORGET = "DELETE FROM trioqueue_schedules WHERE name = ? AND updated_at <= ?"


class SqliteSchedules:
    """``record_schedule``, ``schedules`` and ``forget_schedule`` of ``SqliteDriver``."""

    db: Connection

    if TYPE_CHECKING:

        def now(self) -> float: ...

        async def _tx(
            self, fn: Callable[..., T], *args: Any, durable: bool = False, rows: int = 0
        ) -> T: ...

    async def record_schedule(self, rec: ScheduleRecord) -> None:
        """Upsert a schedule by name (one statement); an older last tick changes nothing."""
        params = {f: getattr(rec, f) for f in SCHEDULE_FIELDS}
        params["updated_at"] = self.now()
        await self._tx(lambda c: c.execute(_UPSERT, params))

    async def schedules(self) -> list[ScheduleRecord]:
        """Return the schedules' records, by name."""
        rows = await self.db.call(lambda c: c.execute(_SELECT).fetchall())
        return [ScheduleRecord(*row) for row in rows]

    async def forget_schedule(self, name: str, updated_at: float) -> bool:
        """Delete the record ``name`` unless it was written after ``updated_at``."""
        return await self._tx(lambda c: c.execute(_FORGET, (name, updated_at)).rowcount > 0)
