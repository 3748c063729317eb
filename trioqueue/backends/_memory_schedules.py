"""The memory driver's schedules: records kept in a dict (``MemoryDriver`` inherits them)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .._schedule._record import ScheduleRecord, merge_schedule

__all__ = ["MemorySchedules"]


class MemorySchedules:
    """``record_schedule``, ``schedules`` and ``forget_schedule`` of ``MemoryDriver``."""

    if TYPE_CHECKING:

        def now(self) -> float: ...

    def _schedule_records(self) -> dict[str, ScheduleRecord]:
        records: dict[str, ScheduleRecord] | None = self.__dict__.get("_schedule_store")
        if records is None:
            records = self.__dict__["_schedule_store"] = {}
        return records

    async def record_schedule(self, rec: ScheduleRecord) -> None:
        """Upsert a schedule by name; one whose last tick is older changes nothing."""
        records = self._schedule_records()
        merged = merge_schedule(records.get(rec.name), rec, self.now())
        if merged is not None:
            records[rec.name] = merged

    async def schedules(self) -> list[ScheduleRecord]:
        """Return copies of the schedules' records, by name."""
        return [dataclasses.replace(r) for _, r in sorted(self._schedule_records().items())]

    async def forget_schedule(self, name: str, updated_at: float) -> bool:
        """Delete the record ``name`` unless it was written after ``updated_at``."""
        records = self._schedule_records()
        rec = records.get(name)
        if rec is None or rec.updated_at > updated_at:
            return False
        del records[name]
        return True
