"""The stateful model: every backend's driver agrees with the plain Python model.

A normal run tries a few dozen sequences per backend; ``TRIOQUEUE_LONG=1``
(``make test-long``) tries thousands.
"""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import toy_driver
from backend_factories import BACKEND_NAMES, BACKENDS, Factory
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from trioqueue import Backend
from trioqueue.testing import make_state_machine

LONG = os.environ.get("TRIOQUEUE_LONG") == "1"

#: Sequences tried per backend, and steps per sequence.
EXAMPLES = {"memory": 2000 if LONG else 150, "sqlite": 2000 if LONG else 60}
DEFAULT_EXAMPLES = 2000 if LONG else 30
STEPS = 40 if LONG else 25


def _settings(examples: int, **extra: object) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.mark.timeout(3600 if LONG else 300)
@pytest.mark.seconds
def test_backend_agrees_with_the_model(backend_name: str) -> None:
    machine = make_state_machine(BACKENDS[backend_name])
    examples = EXAMPLES.get(backend_name, DEFAULT_EXAMPLES)
    run_state_machine_as_test(machine, settings=_settings(examples))


@pytest.mark.seconds
def test_the_file_toy_driver_agrees_with_the_model(tmp_path: Path) -> None:
    n = [0]

    def factory(**options: Any) -> AbstractAsyncContextManager[Backend]:
        n[0] += 1
        return toy_driver.open_file_backend(f"toyfile://{tmp_path}/s{n[0]}.json", **options)

    machine = make_state_machine(factory)
    run_state_machine_as_test(machine, settings=_settings(2000 if LONG else 20))


@pytest.mark.parametrize(
    "factory",
    [
        toy_driver.open_losing_rescue,
        toy_driver.open_unchecked_settle,
        toy_driver.open_ignores_cancel_on_settle,
    ],
    ids=["loses-on-rescue", "unchecked-settle", "ignores-cancel-on-settle"],
)
@pytest.mark.seconds
def test_the_model_catches_a_broken_driver(factory: Factory) -> None:
    machine = make_state_machine(factory)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            machine, settings=_settings(500, phases=[Phase.generate], derandomize=True)
        )
