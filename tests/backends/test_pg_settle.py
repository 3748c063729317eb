"""PostgreSQL: a settle whose reply was lost after its commit, retried, is not a lost lease."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pg_support import pg_url, random_name
from psycopg import sql

from trioqueue import Abort, Status, WorkerBuilder
from trioqueue.backends.postgres import PostgresBackend

__all__ = ["pg_url"]

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema(pg_url: str) -> Iterator[str]:
    name = random_name("tq_settle")
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


async def outcome_of(n: int) -> int:
    if n < 0:
        raise Abort("negative")
    if n == 0:
        raise RuntimeError("zero")
    return 2 * n


@pytest.mark.parametrize(("n", "status"), [(21, "done"), (0, "failed"), (-1, "killed")])
async def test_a_settle_retried_after_its_commit_is_not_a_lost_lease(
    pg_url: str, schema: str, n: int, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with PostgresBackend.open(pg_url, schema=schema) as b:
        task_id = await b.push(n)
        driver: Any = b.driver
        fetch, lost = driver._runner.fetch, []

        async def reply_lost(query: Any, params: Any, **options: Any) -> Any:
            # The server commits the settle, then the reply never comes back:
            # what a crash between the commit and the answer looks like.
            rows = await fetch(query, params, **options)
            if query is driver._sql.settle and not lost:
                lost.append(params)
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            return rows

        driver._runner.fetch = reply_lost
        worker = WorkerBuilder("w").backend(b).build(outcome_of)
        with caplog.at_level(logging.WARNING):
            await worker.run(burst=True)
        task = await b.get_task(task_id)
    assert lost  # the first settle's reply was lost...
    assert "storage failed to settle tasks" in caplog.text  # ...and the settle retried
    assert task is not None and task.status is Status(status) and task.attempts == 1
    assert "lease lost before settling" not in caplog.text
