from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import trioqueue as tq


@pytest.fixture
async def memory_backend() -> AsyncIterator[tq.MemoryBackend]:
    async with tq.MemoryBackend.open() as backend:
        yield backend
