"""Bad schedules are refused when they are declared or built, with a message that says why."""

from __future__ import annotations

import math
from typing import Any

import pytest

import trioqueue as tq
from trioqueue import WorkerBuilder


async def handler(args: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("61 * * * *", "bad cron expression '61 * * * *'"),
        ("* * *", "bad cron expression"),
        ("0 0 30 2 *", "bad cron expression"),
        ("@fortnightly", "bad cron expression"),
    ],
)
def test_a_bad_cron_expression_is_refused(expr: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("*", r"\*")):
        WorkerBuilder("w").cron(expr)


def test_bad_zones_modes_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        WorkerBuilder("w").cron("0 * * * *", tz="Mars/Olympus")
    with pytest.raises(TypeError, match="tz must be an IANA"):
        WorkerBuilder("w").cron("0 * * * *", tz=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"catch_up must be one of \('latest', 'all', 'none'\)"):
        WorkerBuilder("w").cron("0 * * * *", catch_up="sometimes")
    with pytest.raises(ValueError, match="1 to 200 characters"):
        WorkerBuilder("w").every(5, name="x" * 201)
    with pytest.raises(ValueError, match="1 to 200 characters"):
        WorkerBuilder("w").every(5, name="")
    with pytest.raises(TypeError, match="a cron expression must be a str"):
        WorkerBuilder("w").cron(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "error", "words"),
    [
        (0, ValueError, "every must be a number of seconds > 0"),
        (-1, ValueError, "> 0"),
        (math.nan, ValueError, "NaN"),
        (math.inf, ValueError, "finite"),
        (0.0001, ValueError, "at least 0.001 seconds"),
        ("5", TypeError, "every must be a number of seconds"),
    ],
)
def test_a_bad_interval_is_refused(seconds: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        WorkerBuilder("w").every(seconds)


async def test_build_refuses_twin_names_and_args_the_codec_cannot_encode() -> None:
    async with tq.MemoryBackend.open() as backend:
        twins = WorkerBuilder("w").backend(backend).every(5, name="a").cron("@daily", name="a")
        with pytest.raises(ValueError, match=r"distinct names: \['a'\] given twice"):
            twins.build(handler)
        with pytest.raises(tq.CodecError):
            WorkerBuilder("w").backend(backend).every(5, args=object()).build(handler)
        worker = WorkerBuilder("w").backend(backend).cron("@daily").every(90).build(handler)
        names = [(s.name, s.schedule) for s in worker.statistics().schedules]
        assert names == [
            ("default:cron:@daily", "cron '0 0 * * *' UTC"),
            ("default:every:90s", "every 90s"),
        ]


def test_the_longest_name_still_makes_a_valid_task_id() -> None:
    from trioqueue._schedule._policy import Schedule

    s = Schedule.every(0.001, args=None, name="n" * 200)
    tid = tq.TaskId(s.tick_id(1_700_000_000_123_000))
    assert tid.endswith(":2023-11-14T22:13:20.123000Z") and len(tid) <= 255
