"""``trioqueue schedules`` lists what the workers of a store recorded, from another process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import trioqueue as tq
from trioqueue._cli import main
from trioqueue.drivers import ScheduleRecord


def _record(url: str, *records: ScheduleRecord) -> None:
    async def run() -> None:
        async with tq.open_backend(url) as backend:
            for rec in records:
                await backend.driver.record_schedule(rec)

    trio.run(run)


def test_schedules_lists_each_schedule_with_its_ticks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/q.db"
    assert main(["schedules", "--backend", url]) == 0
    assert capsys.readouterr().out == "no schedules\n"
    _record(
        url,
        ScheduleRecord("nightly", "reports", "30 2 * * *", None, "Europe/Berlin", 1711848600.0,
                       1711931400.0),
        ScheduleRecord("beat", "default", None, 2.5, "UTC", None, 1711848602.5),
    )  # fmt: skip
    assert main(["schedules", "--backend", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "name", "queue", "state", "schedule", "tz", "last_tick", "next_tick",
    ]  # fmt: skip
    assert [line.split() for line in lines[1:]] == [
        ["beat", "default", "stale", "every", "2.5s", "UTC", "-", "2024-03-31T01:30:02.500Z"],
        ["nightly", "reports", "stale", "30", "2", "*", "*", "*", "Europe/Berlin",
         "2024-03-31T01:30:00.000Z", "2024-04-01T00:30:00.000Z"],
    ]  # fmt: skip
    assert main(["schedules", "--backend", url, "--queue", "reports", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert list(listed) == [
        "name", "queue", "stale", "expr", "interval", "tz", "last_tick", "next_tick",
        "updated_at",
    ]  # fmt: skip
    assert listed["stale"] is True
    assert (listed["name"], listed["expr"], listed["interval"], listed["tz"]) == (
        "nightly", "30 2 * * *", None, "Europe/Berlin",
    )  # fmt: skip
    assert listed["last_tick"] == "2024-03-31T01:30:00.000Z"
    assert main(["schedules", "--backend", url, "--queue", "nowhere"]) == 0
    assert capsys.readouterr().out == "no schedules on queue 'nowhere'\n"
