"""Workflows under SIGKILL: every run completes, every node is DONE once, joins whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioqueue.testing import CrashReport, run_crash_test


async def _crash(url: str, tmp_path: Path) -> CrashReport:
    return await run_crash_test(
        url,
        tasks=20,
        flows=12,
        workers=2,
        rounds=4,
        concurrency=4,
        sleep_max=0.2,
        lease_seconds=1.0,
        stalls=1,
        seed=3,
        workdir=str(tmp_path),
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.seconds
async def test_workflows_survive_killed_workers(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        report = await _crash(f"sqlite:///{tmp_path}/tasks.db", tmp_path)
    else:
        from pg_support import fresh_database

        with fresh_database() as url:
            report = await _crash(url, tmp_path)
    assert report.flows == 12 and report.kills == 4 and report.stalls == 1
    ledger = (tmp_path / "ledger.txt").read_text().split()
    assert sum(token.endswith("/join") for token in ledger) >= 12
    # A kill caught a node running: the reruns are the proof that it survived one.
    assert any("/" in id for id in report.rerun_tasks), report
