"""The crash harness: SIGKILLed workers lose nothing, and a lossy driver is caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trioqueue.testing import CrashReport, CrashTestFailure, run_crash_test
from trioqueue.testing._crash import stale_starts

LONG = os.environ.get("TRIOQUEUE_LONG") == "1"
HERE = Path(__file__).resolve().parents[1]  # tests/, where toy_driver.py lives
OPENER = "toy_driver:open_file_backend"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    return env


@pytest.mark.seconds
async def test_killed_workers_lose_no_task(tmp_path: Path) -> None:
    report = await run_crash_test(
        f"toyfile://{tmp_path}/store.json",
        opener=OPENER,
        env=_env(),
        tasks=60,
        workers=2,
        rounds=3,
        concurrency=2,
        sleep_max=0.2,
        lease_seconds=1.0,
        cancels=6,
        pauses=1,
        seed=1,
        workdir=str(tmp_path),
    )
    assert report.kills == 3 and report.pauses == 1
    assert report.cancelled > 0, "no cancel_task found a task unfinished: it proved nothing"
    assert report.reruns > 0, "no kill caught a task running: the test proved nothing"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.seconds
async def test_killed_workers_lose_no_task_on_real_backends(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        report = await _real(f"sqlite:///{tmp_path}/tasks.db", tmp_path, rounds=3, tasks=60)
    else:
        from pg_support import fresh_database

        with fresh_database() as url:
            report = await _real(url, tmp_path, rounds=3, tasks=60)
    assert report.kills == 3 and report.pauses == 1
    assert report.cancelled > 0, "no cancel_task found a task unfinished: it proved nothing"
    assert report.reruns > 0, "no kill caught a task running: the test proved nothing"


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="many kill rounds: set TRIOQUEUE_LONG=1 (make test-long)")
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_many_rounds_of_kills_on_real_backends(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        report = await _real(f"sqlite:///{tmp_path}/tasks.db", tmp_path, rounds=40, tasks=1000)
    else:
        from pg_support import fresh_database

        with fresh_database() as url:
            report = await _real(url, tmp_path, rounds=40, tasks=1000)
    assert report.kills == 40


async def _real(url: str, tmp_path: Path, *, rounds: int, tasks: int) -> CrashReport:
    return await run_crash_test(
        url,
        tasks=tasks,
        workers=2,
        rounds=rounds,
        concurrency=2,
        sleep_max=0.2,
        lease_seconds=2.0,
        cancels=max(6, tasks // 20),
        pauses=max(1, rounds // 4),
        seed=5,
        workdir=str(tmp_path),
    )


@pytest.mark.slow
@pytest.mark.skipif(not LONG, reason="many kill rounds: set TRIOQUEUE_LONG=1 (make test-long)")
async def test_many_rounds_of_kills_lose_no_task(tmp_path: Path) -> None:
    report = await run_crash_test(
        f"toyfile://{tmp_path}/store.json",
        opener=OPENER,
        env=_env(),
        tasks=600,
        workers=3,
        rounds=40,
        concurrency=2,
        lease_seconds=1.0,
        sleep_max=0.2,
        cancels=30,
        pauses=10,
        seed=7,
        workdir=str(tmp_path),
    )
    assert report.kills == 40
    assert report.reruns > 0


@pytest.mark.seconds
async def test_a_driver_losing_tasks_on_rescue_is_caught(tmp_path: Path) -> None:
    with pytest.raises(CrashTestFailure) as info:
        await run_crash_test(
            f"toyfile-lossy://{tmp_path}/store.json",
            opener=OPENER,
            env=_env(),
            tasks=24,
            workers=1,
            rounds=1,
            concurrency=4,
            lease_seconds=1.0,
            sleep_max=0.3,
            kill_within=0.1,
            seed=3,
            workdir=str(tmp_path),
        )
    failure = info.value
    assert failure.report.kills == 1
    assert any("was lost: it is no longer in storage" in p for p in failure.problems)


async def test_memory_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="shared by processes"):
        await run_crash_test("memory://")


def test_a_start_under_a_superseded_lease_is_caught() -> None:
    # Process 11 prefetched t1 (attempt 1) and stalled; process 22 claimed it
    # again (attempt 2) and started it; then 11 woke up and started its copy.
    runs = [("t0", 11, 1), ("t1", 22, 2), ("t1", 11, 1), ("t2", 11, 1), ("t2", 22, 2)]
    [problem] = stale_starts(runs)
    assert problem.startswith("task t1 was started by process 11 with attempt 1 after")
    assert "process 22 had started attempt 2" in problem
    assert stale_starts([("t", 1, 1), ("t", 2, 2), ("t", 3, 3)]) == []
    assert len(stale_starts([("t", 1, 2), ("t", 2, 2)])) == 1  # one claim, two starts


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.seconds
async def test_a_stalled_worker_starts_no_task_it_no_longer_holds(
    tmp_path: Path, backend: str
) -> None:
    async def stall(url: str) -> CrashReport:
        return await run_crash_test(
            url,
            tasks=200,
            workers=2,
            rounds=0,
            stalls=2,
            concurrency=4,
            sleep_max=0.05,
            lease_seconds=1.0,
            seed=11,
            workdir=str(tmp_path),
        )

    if backend == "sqlite":
        report = await stall(f"sqlite:///{tmp_path}/tasks.db")
    else:
        from pg_support import fresh_database

        with fresh_database() as url:
            report = await stall(url)
    assert report.stalls == 2 and report.kills == 0
    assert report.reruns > 0, "no stall outlasted a lease: the test proved nothing"
