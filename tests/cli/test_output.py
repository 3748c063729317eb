"""What commands print: passwords masked, UTC timestamps, tables, task fields."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from trioqueue import Task
from trioqueue._cli._output import dumps, escape, iso, jsonable, redact, short, table, task_dict


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
        "id", "queue", "status", "attempts", "max_attempts", "priority", "run_at", "meta",
        "last_error", "args", "result", "traceback",
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
