"""The mixed deployment, longer and shuffled: more processes, tasks and rounds, random kills.

The seed is printed (and read from ``TRIOQUEUE_SCENARIO_SEED`` to replay a run).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from pg_support import store_url
from scenarios import invariants
from scenarios.mixed import Plan, deploy_mixed

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_shuffled_deployment_holds_every_invariant(backend: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("TRIOQUEUE_SCENARIO_SEED") or random.randrange(2**32))
    print(f"scenario seed {seed} (TRIOQUEUE_SCENARIO_SEED={seed} replays it)")
    rng = random.Random(seed)
    work, runs = rng.randint(100, 300), rng.randint(16, 40)
    plan = Plan(work=work, runs=runs, scratch=600, rounds=4, extra=rng.randint(1, 2), seed=seed)
    with store_url(backend, tmp_path) as url:
        obs = deploy_mixed(tmp_path / "deploy", url, plan, backend)
    found = [f"{check.__name__}: {v}" for check in invariants.ALL for v in check(obs)]
    assert not found, f"{backend}, seed {seed}, {plan}:\n" + "\n".join(found)
