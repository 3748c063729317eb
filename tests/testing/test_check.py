"""The conformance suite passes on every backend and catches broken drivers."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import toy_driver
from backend_factories import BACKEND_NAMES, BACKENDS, Factory

from trioqueue import Backend
from trioqueue.testing import CHECK_NAMES, check_backend


@pytest.fixture(params=BACKEND_NAMES)
def open_backend(request: pytest.FixtureRequest) -> Factory:
    return BACKENDS[request.param]


@pytest.mark.seconds
async def test_every_backend_passes(open_backend: Factory) -> None:
    await check_backend(open_backend)


async def test_file_toy_driver_passes(tmp_path: os.PathLike[str]) -> None:
    n = [0]

    def factory(**options: Any) -> AbstractAsyncContextManager[Backend]:
        n[0] += 1
        return toy_driver.open_file_backend(f"toyfile://{tmp_path}/s{n[0]}.json", **options)

    await check_backend(factory)


@pytest.mark.parametrize(
    ("factory", "promise", "words"),
    [
        (toy_driver.open_forgetful_release, "shutdown.release", "did not release prefetched"),
        (
            toy_driver.open_unchecked_settle,
            "lease.compare_and_set",
            "settle with a stale token overwrote the outcome of task cas-1",
        ),
        (toy_driver.open_losing_rescue, "lease.expiry", "task le-1 was lost"),
        (toy_driver.open_cancels_anything, "cancel", "cancel of a DONE task was accepted"),
        (toy_driver.open_retries_only_killed, "admin.retry", "retry of a FAILED task refused"),
        (
            toy_driver.open_ignores_cancel_on_settle,
            "cancel.flagged",
            "task cf-1 is done after a settle DONE of a flagged task, expected cancelled",
        ),
        pytest.param(
            toy_driver.open_deaf_to_changes,
            "signal.change",
            "wait_for_change(max_wait=60.0) had not returned",
            marks=pytest.mark.seconds,  # it waits out each of its rounds
        ),
        (toy_driver.open_impatient, "signal.change", "returned at once 4 times in a row"),
        (toy_driver.open_endless_runs, "flow.end_rule", "task r4 is running after its node a"),
        (toy_driver.open_forgetful_joins, "flow.fan_in", "task r2/j was lost"),
        (toy_driver.open_uncounted_purge, "admin.counts_every_path", "after a purge"),
    ],
    ids=[
        "forgets-release",
        "unchecked-settle",
        "loses-on-rescue",
        "cancels-anything",
        "retries-only-killed",
        "ignores-cancel-on-settle",
        "deaf-to-changes",
        "never-waits",
        "endless-runs",
        "forgetful-joins",
        "uncounted-purge",
    ],
)
async def test_broken_drivers_fail_naming_the_promise(
    factory: Factory, promise: str, words: str
) -> None:
    with pytest.raises(AssertionError) as info:
        await check_backend(factory)
    message = str(info.value)
    assert message.startswith(f"[{promise}] ")
    assert words in message


async def test_a_consumer_cancelled_from_outside_must_release_what_it_holds() -> None:
    with pytest.raises(AssertionError, match=r"^\[shutdown.outer_cancel\] .*did not release"):
        await check_backend(toy_driver.open_forgetful_release, only=["shutdown.outer_cancel"])


async def test_only_runs_the_named_checks() -> None:
    # The lossy driver passes every check that never lets a lease expire.
    await check_backend(toy_driver.open_losing_rescue, only=["push.round_trip", "claim.order"])
    with pytest.raises(ValueError, match="unknown checks"):
        await check_backend(toy_driver.open_losing_rescue, only=["no.such"])
    assert CHECK_NAMES[0] == "push.round_trip" and "lease.compare_and_set" in CHECK_NAMES


async def test_memory_next_run_at_is_the_earliest_run_at() -> None:
    from trioqueue import StoredTask
    from trioqueue.backends.memory import MemoryDriver

    driver = MemoryDriver(clock=lambda: 1000.0)
    await driver.insert(
        [
            StoredTask("early", "q", b"1", run_at=990.0, priority=0),
            StoredTask("urgent", "q", b"1", run_at=999.0, priority=5),
        ]
    )
    assert await driver.next_run_at("q") == 990.0
