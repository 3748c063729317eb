"""Every duration argument refuses NaN, negatives and (where it makes no sense) infinity."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from backend_factories import Factory

import trioqueue as tq
from trioqueue import WorkerBuilder
from trioqueue._durations import seconds, seconds_option
from trioqueue.layers import CircuitBreakerLayer, RateLimitLayer, TimeoutLayer

NAN, INF = math.nan, math.inf


def test_seconds_names_the_argument() -> None:
    assert seconds("x", 0) == 0.0 and seconds("x", 2) == 2.0
    assert seconds("x", INF, infinite=True) == INF
    with pytest.raises(ValueError, match="older_than must be a number of seconds >= 0, got NaN"):
        seconds("older_than", NAN)
    with pytest.raises(ValueError, match=r"lease must be a number of seconds > 0, got 0\.0"):
        seconds("lease", 0, positive=True)
    with pytest.raises(ValueError, match=r"delay must be a number of seconds >= 0, got -1\.0"):
        seconds("delay", -1)
    with pytest.raises(ValueError, match="delay must be a finite number of seconds, got inf"):
        seconds("delay", INF)
    with pytest.raises(ValueError, match="delay must be a finite number"):
        seconds("delay", 10**400)  # too large for a float
    with pytest.raises(ValueError, match="-inf"):
        seconds("delay", -INF, infinite=True)
    with pytest.raises(TypeError, match="delay must be a number of seconds, got bool"):
        seconds("delay", True)
    with pytest.raises(TypeError, match="got str"):
        seconds("delay", "5")
    assert seconds_option("busy_timeout", "2.5") == 2.5
    with pytest.raises(ValueError, match="busy_timeout must be a number of seconds, got 'soon'"):
        seconds_option("busy_timeout", "soon")
    with pytest.raises(ValueError, match="busy_timeout must be a number of seconds >= 0, got NaN"):
        seconds_option("busy_timeout", "nan")


def _builder() -> WorkerBuilder:
    return WorkerBuilder("w")


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda v: _builder().lease(v), "lease"),
        (lambda v: _builder().poll_interval(v), "poll_interval"),
        (lambda v: _builder().shutdown_timeout(v), "shutdown_timeout"),
        (lambda v: _builder().timeout(v), "timeout"),
        (lambda v: tq.Monitor(shutdown_timeout=v), "shutdown_timeout"),
        (lambda v: tq.Exponential(base=v), "base"),
        (lambda v: tq.Exponential(max_delay=v), "max_delay"),
        (lambda v: tq.Exponential(factor=v), "factor"),
        (lambda v: tq.Fixed(v), "seconds"),
        (lambda v: tq.Linear(v), "step"),
        (lambda v: tq.Linear(1, max_delay=v), "max_delay"),
        (lambda v: tq.RetryAfter(v), "RetryAfter seconds"),
        (lambda v: TimeoutLayer(v), "seconds"),
        (lambda v: RateLimitLayer(1, per=v), "per"),
        (lambda v: CircuitBreakerLayer(cool_down=v), "cool_down"),
    ],
)
@pytest.mark.parametrize("value", [NAN, -1.0, -INF])
def test_library_durations_refuse_nan_and_negatives(
    make: Callable[[float], object], name: str, value: float
) -> None:
    with pytest.raises(ValueError, match=name):
        make(value)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: _builder().lease(INF), "lease"),
        (lambda: _builder().poll_interval(INF), "poll_interval"),
        (lambda: tq.Exponential(base=INF), "base"),
        (lambda: tq.Fixed(INF), "seconds"),
        (lambda: tq.RetryAfter(INF), "RetryAfter seconds"),
        (lambda: RateLimitLayer(1, per=INF), "per"),
    ],
)
def test_infinity_is_refused_where_it_makes_no_sense(make: Callable[[], object], name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        make()


def test_infinity_means_no_end_where_it_makes_sense() -> None:
    assert _builder().shutdown_timeout(INF) is not None
    assert TimeoutLayer(INF).seconds == INF
    assert tq.Monitor(shutdown_timeout=INF) is not None


@pytest.mark.parametrize("older_than", [NAN, -1.0, INF, -INF])
async def test_purge_with_a_bad_age_deletes_nothing(
    open_backend: Factory, older_than: float
) -> None:
    async def handler(n: int) -> None:
        return None

    async with open_backend() as b:
        await b.push(1)
        await WorkerBuilder("w").backend(b).build(handler).run(burst=True)
        with pytest.raises(ValueError, match="older_than"):
            await b.purge(older_than=older_than)
        assert await b.counts() == {"default": {tq.Status.DONE: 1}}
        assert await b.purge(older_than=0) == 1


@pytest.mark.parametrize("delay", [NAN, -1.0, INF])
async def test_push_with_a_bad_delay_stores_nothing(open_backend: Factory, delay: float) -> None:
    async with open_backend() as b:
        with pytest.raises(ValueError, match="delay must be"):
            await b.push(1, delay=delay)
        assert await b.counts() == {}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("busy_timeout=nan", "busy_timeout must be a number of seconds >= 0, got NaN"),
        ("busy_timeout=inf", "busy_timeout must be a finite number of seconds"),
        ("busy_timeout=-1", "busy_timeout must be a number of seconds >= 0"),
        ("busy_timeout=later", "busy_timeout must be a number of seconds, got 'later'"),
        ("poll_min=nan", "poll_min must be a number of seconds >= 0, got NaN"),
        ("poll_min=0", "poll_min must be a number of seconds > 0, got 0.0"),
        ("poll_max=inf", "poll_max must be a finite number of seconds"),
    ],
)
async def test_sqlite_url_durations_are_checked(tmp_path: Path, query: str, message: str) -> None:
    url = f"sqlite:///{tmp_path}/q.db?{query}"
    with pytest.raises(ValueError, match=message):
        async with tq.open_backend(url):
            pass  # pragma: no cover - never opened
    assert not (tmp_path / "q.db").exists()


@pytest.mark.parametrize("option", ["statement_timeout", "connect_timeout"])
@pytest.mark.parametrize("value", [NAN, INF, -1.0, 0.0])
async def test_postgres_timeouts_are_checked(option: str, value: float) -> None:
    from trioqueue.backends.postgres import PostgresBackend

    options: dict[str, Any] = {option: value}
    with trio.fail_after(10), pytest.raises(ValueError, match=option):
        # Refused before any connection: the address is never dialled.
        async with PostgresBackend.open("postgresql://nobody@192.0.2.1:1/none", **options):
            pass  # pragma: no cover - never opened
