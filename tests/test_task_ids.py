"""Generated task ids: monotonic ULIDs, whose unchanged head is reused between ids."""

from __future__ import annotations

import time

import pytest

from trioqueue import _task
from trioqueue._task import TaskId

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode(tid: str) -> tuple[int, int]:
    """Return (milliseconds, 80 random bits) of a ULID."""
    n = 0
    for ch in tid:
        n = n * 32 + CROCKFORD.index(ch)
    return n >> 80, n & ((1 << 80) - 1)


def test_ids_carry_the_time_and_increase() -> None:
    before = time.time_ns() // 1_000_000
    ids = [TaskId.new() for _ in range(50_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 26 for i in ids)
    stamps = [decode(i)[0] for i in ids]
    assert before <= stamps[0] <= stamps[-1] <= after


@pytest.mark.parametrize("low_bits", [20, 30, 80])
def test_within_a_millisecond_each_id_is_the_last_plus_one(
    monkeypatch: pytest.MonkeyPatch, low_bits: int
) -> None:
    # A millisecond far ahead of the clock: every id is made "in" it, and the
    # random part crosses a carry into the reused head (or wraps at 80 bits).
    monkeypatch.setattr(_task, "_last_ms", time.time_ns() // 1_000_000 + 10_000)
    monkeypatch.setattr(_task, "_last_rand", (1 << low_bits) - 3)
    monkeypatch.setattr(_task, "_head_of", -1)
    ids = [TaskId.new() for _ in range(6)]
    parts = [decode(i) for i in ids]
    assert {ms for ms, _ in parts} == {_task._last_ms}
    mask = (1 << 80) - 1
    assert [r for _, r in parts] == [((1 << low_bits) - 2 + k) & mask for k in range(6)]
    if low_bits < 80:
        assert ids == sorted(ids)
