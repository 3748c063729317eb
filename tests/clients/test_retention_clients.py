"""The clients store and read a queue's retention: the rule a Trio worker of the queue applies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import trio

import trioqueue as tq
from trioqueue import Retention
from trioqueue.asyncio import open_client
from trioqueue.sync import Client


def test_the_clients_set_and_read_the_rule_a_backend_sees(store_url: str) -> None:
    hour = Retention(done=timedelta(hours=1), killed=None)
    with Client(store_url, queue="jobs") as client:
        assert client.retention() == Retention()  # none stored: the default of open_backend
        client.set_retention("jobs", hour)
        assert client.retention() == hour
        with pytest.raises(TypeError, match="Retention or None"):
            client.set_retention("jobs", 3600)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="negative"):
            client.set_retention("jobs", Retention(done=timedelta(days=-1)))
        assert client.retention("jobs") == hour  # nothing stored by the refused calls

    async def app() -> None:
        async with open_client(store_url, queue="mail") as client:
            assert await client.retention("jobs") == hour
            await client.set_retention("mail", None)
            assert await client.retention() is None
            with pytest.raises(ValueError):
                await client.set_retention("", None)

    asyncio.run(app())

    async def worker_side() -> dict[str, Retention | None]:
        async with tq.open_backend(store_url, retention=Retention(interval=5)) as b:
            return await b.retentions()

    assert trio.run(worker_side) == {"jobs": Retention(done=hour.done, killed=None, interval=5),
                                     "mail": None}  # fmt: skip
