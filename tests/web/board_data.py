"""Stores the board's tests look at: tasks in every status, put there through the driver.

``seed`` writes what a store holds after real work (a worker's claim, start
and settle, under a lease), without running handlers, so that each test
knows exactly which task is in which status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trioqueue import Backend, Status
from trioqueue.drivers import Outcome, StoredTask

#: An id and an error a producer could craft to break out of HTML.
HOSTILE_ID = '<script>alert("id")</script>&"\''
HOSTILE_ERROR = 'ValueError: <img src=x onerror=alert("e")>'


@dataclass
class Seeded:
    """The ids of the seeded tasks, by status."""

    ids: dict[Status, list[str]] = field(default_factory=dict)

    def of(self, status: Status) -> list[str]:
        return self.ids.get(status, [])


async def seed(
    backend: Backend,
    *,
    queue: str = "mail",
    done: int = 2,
    killed: int = 2,
    running: int = 1,
    pending: int = 2,
    failed: int = 1,
    prefix: str = "t",
    hostile: bool = False,
) -> Seeded:
    """Store tasks of ``queue`` in these statuses; return their ids by status.

    Ids sort in the order written; ``hostile`` adds a killed task whose id
    and error are HTML (``HOSTILE_ID``, ``HOSTILE_ERROR``).
    """
    driver = backend.driver
    codec = backend.codec
    now = driver.now()
    out = Seeded()
    plan = [
        (Status.DONE, done), (Status.KILLED, killed), (Status.FAILED, failed),
        (Status.RUNNING, running), (Status.PENDING, pending),
    ]  # fmt: skip
    n = 0
    for status, count in plan:
        for _ in range(count):
            n += 1
            id = f"{prefix}{n:04d}-{status.value}"
            if hostile and status is Status.KILLED and HOSTILE_ID not in out.of(status):
                id = HOSTILE_ID
            args: Any = {"to": f"user{n}@example.com", "n": n}
            rec = StoredTask(
                id=id, queue=queue, payload=codec.encode(args), run_at=now - 5, created_at=now,
                max_attempts=1 if status is Status.KILLED else 3,
            )  # fmt: skip
            await driver.insert([rec])
            out.ids.setdefault(status, []).append(id)
            if status is Status.PENDING:
                continue
            token = f"tok-{id}"
            claimed = await driver.claim(queue, 1, token, 300.0, worker="worker-1@host:1")
            assert [r.id for r in claimed] == [id], (claimed, id)
            await driver.start([id], token)
            if status is Status.RUNNING:
                continue
            outcome = Outcome(id, Status.DONE, result=codec.encode({"sent": n}))
            if status is not Status.DONE:
                error = HOSTILE_ERROR if id == HOSTILE_ID else f"RuntimeError: smtp down {n}"
                tb = f'Traceback (most recent call last):\n  File "app.py", line 3\n{error}'
                outcome = Outcome(id, Status.FAILED, error=error, traceback=tb, delay=600)
            assert await driver.settle([outcome], token) == [id]
    return out
