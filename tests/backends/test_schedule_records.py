"""The schedules' records on every backend: the conformance check, and a driver it catches."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import toy_driver
from backend_factories import BACKEND_NAMES, BACKENDS, Factory

from trioqueue import Backend
from trioqueue.testing import check_backend


@pytest.mark.parametrize("name", BACKEND_NAMES)
async def test_schedule_records_conform(name: str) -> None:
    await check_backend(BACKENDS[name], only=["schedules.record", "schedules.forget"])


async def test_the_file_toy_driver_keeps_schedules(tmp_path: os.PathLike[str]) -> None:
    def factory(**options: Any) -> AbstractAsyncContextManager[Backend]:
        return toy_driver.open_file_backend(f"toyfile://{tmp_path}/s.json", **options)

    await check_backend(factory, only=["schedules.record", "schedules.forget"])


async def test_a_driver_that_moves_the_last_tick_back_fails() -> None:
    factory: Factory = toy_driver.open_rewinding_schedule
    with pytest.raises(AssertionError, match=r"^\[schedules\.record\] .* after an older last tick"):
        await check_backend(factory, only=["schedules.record"])
