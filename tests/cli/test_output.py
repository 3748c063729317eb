"""What commands print: passwords masked, UTC timestamps, tables, task fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from trioqueue import Status, Task, WorkerInfo
from trioqueue._cli._output import (
    dumps,
    duration,
    escape,
    iso,
    jsonable,
    redact,
    short,
    table,
    task_dict,
    worker_dict,
)


def test_redact_masks_only_the_password() -> None:
    assert redact("postgresql://app:s3cret@db:5432/jobs") == "postgresql://app:***@db:5432/jobs"
    assert redact("postgresql://app@db/jobs") == "postgresql://app@db/jobs"
    assert redact("sqlite:///q.db") == "sqlite:///q.db"
    assert redact("http://[::1") == "http://[::1"  # not a URL to take apart


def test_iso_is_utc_to_the_millisecond() -> None:
    paris = timezone(timedelta(hours=1))
    assert iso(datetime(2025, 1, 10, 10, 30, 0, 125_999, tzinfo=paris)) == (
        "2025-01-10T09:30:00.125Z"
    )
    assert iso(None) is None


def test_table_aligns_columns_without_trailing_space() -> None:
    assert table(["id", "status"], [["a", "done"], ["long-id", ""]]) == (
        "id       status\na        done\nlong-id"
    )


def test_short_fits_one_line() -> None:
    assert short("a\n  b") == "a b"
    assert short("x" * 10, 5) == "xxxx…"
    assert short(None) == ""


def test_undecoded_payloads_show_as_hex() -> None:
    assert jsonable(b"\x00\xff") == {"$bytes": "00ff"}
    d = task_dict(Task(b"\x01", queue="q", attempts=1))
    assert list(d) == [
        "id", "queue", "status", "attempts", "max_attempts", "priority", "run_at", "created_at",
        "started_at", "finished_at", "duration", "worker", "progress", "meta", "last_error",
        "args", "result", "traceback",
    ]  # fmt: skip
    assert (d["queue"], d["args"], d["attempts"]) == ("q", {"$bytes": "01"}, 1)


def test_escape_writes_controls_as_escapes_and_leaves_text_alone() -> None:
    assert escape("a\x1b[31mb\n\t\r\x7f\x9b\u202ec") == "a\\x1b[31mb\\n\\t\\r\\x7f\\x9b\\u202ec"
    assert escape("héllo wörld ✓ 日本") == "héllo wörld ✓ 日本"
    assert table(["q"], [["a\x1bb"]]) == "q\na\\x1bb"
    assert short("x\x07y") == "x\\x07y"
    assert dumps({"k": "\x1b\x85\u2028"}) == '{"k": "\\u001b\\u0085\\u2028"}'


def test_integers_beyond_64_bits_are_hex() -> None:
    assert jsonable([2**64, -(2**64), 2**64 - 1, True]) == [
        {"$int": "0x10000000000000000"}, {"$int": "-0x10000000000000000"}, 2**64 - 1, True,
    ]  # fmt: skip


def test_duration_is_the_last_attempt_of_a_final_task() -> None:
    t0 = datetime(2025, 1, 10, 9, 30, tzinfo=UTC)
    done = Task(1, status=Status.DONE, started_at=t0, finished_at=t0 + timedelta(seconds=1.25))
    assert duration(done) == 1.25
    assert task_dict(done)["duration"] == 1.25
    running = Task(1, status=Status.RUNNING, started_at=t0)
    assert duration(running) is None
    never_ran = Task(1, status=Status.CANCELLED, finished_at=t0)
    assert duration(never_ran) is None
    skewed = Task(1, status=Status.DONE, started_at=t0, finished_at=t0 - timedelta(seconds=1))
    assert duration(skewed) == 0.0  # clocks of two hosts: never negative


def test_worker_fields() -> None:
    t0 = datetime(2025, 1, 10, 9, 30, tzinfo=UTC)
    info = WorkerInfo("w@h:1", "h", 1, "default", 8, 3, t0, t0 + timedelta(seconds=9))
    assert worker_dict(info) == {
        "name": "w@h:1", "host": "h", "pid": 1, "queue": "default", "concurrency": 8,
        "running": 3, "started_at": "2025-01-10T09:30:00.000Z",
        "last_seen": "2025-01-10T09:30:09.000Z",
    }  # fmt: skip
