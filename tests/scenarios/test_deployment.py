"""A small real deployment, on SQLite and PostgreSQL, judged by invariants (see ``mixed.py``).

The deployment runs once per backend (a module fixture); each test checks
one invariant of what it saw, so a failure names the invariant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pg_support import store_url
from scenarios import invariants
from scenarios.mixed import Observation, Plan, deploy_mixed

pytestmark = pytest.mark.seconds


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def observed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observation]:
    """The mixed deployment, run once per backend and module."""
    home = tmp_path_factory.mktemp(f"deploy-{request.param}")
    with store_url(request.param, home) as url:
        yield deploy_mixed(home, url, Plan(), request.param)


def check(invariant: Callable[[Observation], list[str]], obs: Observation) -> None:
    violations = invariant(obs)
    assert not violations, f"{obs.backend}: {invariant.__doc__}\n" + "\n".join(violations)


def test_admin_commands_succeed(observed: Observation) -> None:
    check(invariants.commands_succeeded, observed)


def test_every_task_ends_once_in_its_final_state(observed: Observation) -> None:
    check(invariants.every_task_ends_once, observed)


def test_side_effects_once_per_successful_attempt(observed: Observation) -> None:
    check(invariants.side_effects_once, observed)


def test_each_tick_pushed_once(observed: Observation) -> None:
    check(invariants.each_tick_once, observed)


def test_retention_follows_each_queues_rule(observed: Observation) -> None:
    check(invariants.retention_by_rule, observed)


def test_workflow_runs_end_with_their_result_after_retry(observed: Observation) -> None:
    check(invariants.runs_complete, observed)


def test_nothing_starts_before_its_time(observed: Observation) -> None:
    check(invariants.nothing_starts_early, observed)


def test_cross_process_cancel_is_prompt(observed: Observation) -> None:
    check(invariants.cancel_is_prompt, observed)


def test_workers_exit_cleanly_on_signals(observed: Observation) -> None:
    check(invariants.workers_exit_cleanly, observed)
