"""The Trio-native PostgreSQL connection and its runner, against a real server.

Most tests use a fresh database on the shared server; the restart test runs a
throwaway cluster of its own (initdb in a temporary folder, its own port).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from pg_support import pg_url, random_name
from psycopg import sql
from psycopg.types.json import Jsonb

from trioqueue.backends._pg_listen import Channels
from trioqueue.backends._pg_native import connect, execute
from trioqueue.backends._pg_pool import NativeRunner
from trioqueue.backends._pg_runner import ThreadRunner
from trioqueue.backends.postgres import BACKEND

__all__ = ["pg_url"]

pytestmark = pytest.mark.postgres

OPTIONS: dict[str, Any] = {"pool_size": 2, "statement_timeout": 30.0, "connect_timeout": 5.0}


@pytest.fixture
def app() -> str:
    """An application_name of this test's own, to find its backends in pg_stat_activity."""
    return random_name("native")


def with_app(url: str, app: str) -> str:
    return f"{url}?application_name={app}"


@asynccontextmanager
async def native(url: str, **options: Any) -> AsyncIterator[NativeRunner]:
    runner = NativeRunner(url, **{**OPTIONS, **options})
    try:
        yield runner
    finally:
        await runner.aclose()


async def pid_of(runner: NativeRunner) -> int:
    (row,) = await runner.fetch("SELECT pg_backend_pid()", None)
    return int(row[0])


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    """Poll the server state until ``check()`` holds, for at most ``seconds``."""
    with trio.fail_after(seconds):
        while True:
            if await check():
                return
            await trio.sleep(0.01)


async def backends(admin: NativeRunner, app: str) -> list[tuple[Any, ...]]:
    """(pid, state, query) of the backends of application ``app``."""
    return await admin.fetch(
        "SELECT pid, state, query FROM pg_stat_activity WHERE application_name = %s", [app]
    )


class Calls:
    """Counts calls; ``wait(n)`` waits on an event for the n-th one."""

    def __init__(self) -> None:
        self.n = 0
        self._waiters: list[tuple[int, trio.Event]] = []

    def __call__(self, *args: object) -> None:
        self.n += 1
        for n, ev in self._waiters:
            if self.n >= n:
                ev.set()

    async def wait(self, n: int) -> None:
        ev = trio.Event()
        self._waiters.append((n, ev))
        if self.n >= n:
            ev.set()
        with trio.fail_after(30):
            await ev.wait()


class Payloads:
    """Collects NOTIFY payloads; ``wait(n)`` waits on an event for n of them."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.channels: list[str] = []
        self._calls = Calls()

    def __call__(self, channel: str, payload: str) -> None:
        self.channels.append(channel)
        self.got.append(payload)
        self._calls()

    async def wait(self, n: int) -> None:
        await self._calls.wait(n)


# -- statements --


async def test_round_trip_types_match_the_thread_runner(pg_url: str) -> None:
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    query = sql.SQL(
        "SELECT %(i)s::int, %(t)s::text, %(j)s, {literal}::jsonb, %(b)s::bytea,"
        " %(ts)s::timestamptz, %(f)s::float8, %(null)s::text, %(ids)s::text[]"
    ).format(literal=sql.Literal('{"k": [1, null]}'))
    params = {
        "i": 42,
        "t": "héllo",
        "j": Jsonb({"a": [1, 2]}),
        "b": b"\x00\xffbin",
        "ts": when,
        "f": 2.5,
        "null": None,
        "ids": ["a", None],
    }
    expected = (42, "héllo", {"a": [1, 2]}, {"k": [1, None]}, b"\x00\xffbin", when, 2.5, None)
    async with native(pg_url) as runner:
        (row,) = await runner.fetch(query, params)
        assert row == (*expected, ["a", None])
        types = [int, str, dict, dict, bytes, datetime, float, type(None), list]
        assert [type(v) for v in row] == types
        assert row[5].tzinfo is not None
        # positional parameters, and statements that return no rows
        assert await runner.fetch("SELECT %s::int * %s::int", [6, 7]) == [(42,)]
        assert await runner.fetch("SET application_name = 'x'", None) == []
        assert await runner.fetch("SELECT 1 WHERE false", None) == []
        thread = ThreadRunner(pg_url, **OPTIONS)
        try:
            assert await thread.fetch(query, params) == [row]
        finally:
            await thread.aclose()


async def test_large_parameter_and_result(pg_url: str) -> None:
    big = "x" * 8_000_000  # more than a socket buffer: the send waits for writable
    async with native(pg_url) as runner:
        assert await runner.fetch("SELECT length(%s)", [big]) == [(len(big),)]
        assert await runner.fetch("SELECT repeat('y', %s)", [len(big)]) == [("y" * len(big),)]


async def test_statement_timeout_is_set_per_connection(pg_url: str) -> None:
    async with native(pg_url, statement_timeout=0.25) as runner:
        assert await runner.fetch("SHOW statement_timeout", None) == [("250ms",)]
        pid = await pid_of(runner)
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            await runner.fetch("SELECT pg_sleep(5)", None)
        assert isinstance(info.value, BACKEND.transient)
        assert await pid_of(runner) == pid  # the server cancelled it: the connection is fine


async def test_errors_are_psycopgs_and_the_connection_stays(pg_url: str) -> None:
    async with native(pg_url, pool_size=1) as runner:
        pid = await pid_of(runner)
        with pytest.raises(psycopg.errors.DivisionByZero):
            await runner.fetch("SELECT 1 / %(zero)s::int", {"zero": 0})
        with pytest.raises(psycopg.errors.SyntaxError):
            await runner.fetch("SELEC 1", None)
        with pytest.raises(psycopg.errors.UndefinedTable):
            await runner.fetch("SELECT * FROM no_such_table", None)
        with pytest.raises(psycopg.ProgrammingError):  # refused before sending
            await runner.fetch("SELECT %(a)s", {"b": 1})
        assert await pid_of(runner) == pid
        assert repr(runner) == "<NativeRunner open idle=1 busy=0 pool_size=1>"


async def test_pool_is_lazy_and_bounded(pg_url: str, app: str) -> None:
    async with native(with_app(pg_url, app), pool_size=2) as runner, native(pg_url) as admin:
        assert await backends(admin, app) == []
        sequential = [await pid_of(runner) for _ in range(5)]
        assert len(set(sequential)) == 1  # one at a time needs one connection
        assert len(await backends(admin, app)) == 1
        pids: list[int] = []

        async def one() -> None:
            (row,) = await runner.fetch("SELECT pg_backend_pid(), pg_sleep(0.05)", None)
            pids.append(row[0])

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one)
        assert len(set(pids)) == 2
        assert len(await backends(admin, app)) == 2
        assert repr(runner) == "<NativeRunner open idle=2 busy=0 pool_size=2>"


async def test_aclose_closes_idle_now_and_busy_when_done(pg_url: str, app: str) -> None:
    async with native(pg_url) as admin:
        runner = NativeRunner(with_app(pg_url, app), **OPTIONS)
        await pid_of(runner)
        rows: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def busy(task_status: trio.TaskStatus[None]) -> None:
                task_status.started()
                rows.extend(await runner.fetch("SELECT 'done' FROM pg_sleep(0.2)", None))

            await nursery.start(busy)
            await eventually(lambda: _has_active(admin, app))
            await runner.aclose()
            assert repr(runner) == "<NativeRunner closed idle=0 busy=1 pool_size=2>"
        assert rows == [("done",)]
        assert repr(runner) == "<NativeRunner closed idle=0 busy=0 pool_size=2>"
        await eventually(lambda: _none_left(admin, app))
        with pytest.raises(trio.ClosedResourceError):
            await runner.fetch("SELECT 1", None)


async def _listening(admin: NativeRunner, app: str, *, not_pid: int = 0) -> bool:
    """Whether a backend of ``app`` has run its LISTEN (and is idle after it)."""
    return any(
        pid != not_pid and state == "idle" and query.startswith("LISTEN")
        for pid, state, query in await backends(admin, app)
    )


async def _has_active(admin: NativeRunner, app: str) -> bool:
    return any(state == "active" for _, state, _ in await backends(admin, app))


async def _none_left(admin: NativeRunner, app: str) -> bool:
    return await backends(admin, app) == []


async def test_connect_refused_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    async with native(url) as runner:
        with pytest.raises(psycopg.OperationalError) as info:
            await runner.fetch("SELECT 1", None)
        assert isinstance(info.value, BACKEND.transient)


async def test_connect_and_execute_without_a_pool(pg_url: str) -> None:
    conn = await connect(pg_url, seconds=5)
    try:
        assert conn.autocommit
        assert await execute(conn, "SELECT %s::int + 1", [1]) == [(2,)]
    finally:
        conn.close()


async def test_fetch_on_the_callers_connection(pg_url: str) -> None:
    async with native(pg_url) as runner:
        with psycopg.connect(pg_url) as conn:  # a transaction of the caller's
            assert await runner.fetch_on(conn, "SELECT %s::int", [5]) == [(5,)]
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            conn.rollback()


# -- cancellation and lost connections --


async def test_cancelled_statement_is_cancelled_on_the_server_and_discarded(
    pg_url: str, app: str
) -> None:
    async with native(with_app(pg_url, app), pool_size=1) as runner, native(pg_url) as admin:
        before = await pid_of(runner)
        with trio.move_on_after(0.2) as scope:
            await runner.fetch("SELECT pg_sleep(10)", None)
        assert scope.cancelled_caught
        assert repr(runner) == "<NativeRunner open idle=0 busy=0 pool_size=1>"
        with trio.fail_after(2):  # a fresh connection, not one stuck behind the sleep
            assert await runner.fetch("SELECT %s::text", ["after"]) == [("after",)]
            after = await pid_of(runner)
        assert after != before

        async def old_one_gone() -> bool:
            rows = await admin.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [before])
            return rows == []

        # Closing the socket alone leaves the backend sleeping its 10 s; the
        # cancel request ends it now.
        await eventually(old_one_gone, seconds=3)


async def test_cancelled_while_waiting_for_a_slot_costs_nothing(pg_url: str, app: str) -> None:
    async with native(with_app(pg_url, app), pool_size=1) as runner, native(pg_url) as admin:
        pid = await pid_of(runner)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.fetch, "SELECT pg_sleep(0.3)", None)
            await eventually(lambda: _has_active(admin, app))  # it holds the only slot
            with trio.move_on_after(0.05) as scope:
                await runner.fetch("SELECT 1", None)
            assert scope.cancelled_caught
        assert await pid_of(runner) == pid  # the running statement's connection was kept


async def test_terminated_idle_connection_is_replaced_without_an_error(pg_url: str) -> None:
    async with native(pg_url, pool_size=1) as runner, native(pg_url) as admin:
        before = await pid_of(runner)
        # With a timeout, pg_terminate_backend waits until the backend has gone.
        assert await admin.fetch("SELECT pg_terminate_backend(%s, 5000)", [before]) == [(True,)]
        after = await pid_of(runner)  # found closed before use: nothing sent on it
        assert after != before


async def test_terminated_mid_statement_raises_a_transient_error(pg_url: str, app: str) -> None:
    async with native(with_app(pg_url, app), pool_size=1) as runner, native(pg_url) as admin:
        before = await pid_of(runner)
        errors: list[BaseException] = []

        async def victim() -> None:
            try:
                await runner.fetch("SELECT pg_sleep(30)", None)
            except psycopg.Error as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(victim)
            await eventually(lambda: _has_active(admin, app))
            await admin.fetch("SELECT pg_terminate_backend(%s)", [before])
        (exc,) = errors
        assert isinstance(exc, psycopg.OperationalError)
        assert isinstance(exc, BACKEND.transient)  # the bridge retries it
        assert await pid_of(runner) != before
        assert await runner.fetch("SELECT 1", None) == [(1,)]


# -- LISTEN --


async def test_listen_receives_notify_and_reconnects(pg_url: str, app: str) -> None:
    channel = random_name("chan")
    payloads, ready = Payloads(), Calls()
    async with native(with_app(pg_url, app)) as listener, native(pg_url) as other:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listener.listen, Channels([channel]), payloads, ready)
            await ready.wait(1)
            await other.fetch("SELECT pg_notify(%s, %s)", [channel, "one"])
            await other.fetch("SELECT pg_notify(%s, %s)", [channel, "two"])
            await payloads.wait(2)
            assert payloads.got == ["one", "two"]
            assert repr(listener) == "<NativeRunner open idle=0 busy=0 pool_size=2>"

            ((pid, _, query),) = await backends(other, app)  # the LISTEN connection
            assert query.startswith("LISTEN")
            await other.fetch("SELECT pg_terminate_backend(%s, 5000)", [pid])
            await ready.wait(3)  # once for the loss, once when listening again
            assert await _listening(other, app, not_pid=pid)
            await other.fetch("SELECT pg_notify(%s, %s)", [channel, "three"])
            await payloads.wait(3)
            assert payloads.got == ["one", "two", "three"]
            nursery.cancel_scope.cancel()
        await eventually(lambda: _none_left(other, app))


@pytest.mark.parametrize("kind", ["native", "thread"])
async def test_a_channel_added_joins_the_same_listen_connection(
    pg_url: str, app: str, kind: str
) -> None:
    first, second = random_name("chan"), random_name("chan")
    channels = Channels([first])
    payloads, ready = Payloads(), Calls()
    runner: Any = (
        NativeRunner(with_app(pg_url, app), **OPTIONS)
        if kind == "native"
        else ThreadRunner(with_app(pg_url, app), **OPTIONS)
    )
    async with native(pg_url) as other:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.listen, channels, payloads, ready)
            await ready.wait(1)
            ((pid, _, _),) = await backends(other, app)
            assert channels.add(second)
            assert not channels.add(second)
            await ready.wait(2)
            await other.fetch("SELECT pg_notify(%s, 'b'), pg_notify(%s, 'a')", [second, first])
            await payloads.wait(2)
            assert sorted(zip(payloads.channels, payloads.got, strict=True)) == sorted(
                [(second, "b"), (first, "a")]
            )
            assert [p for p, _, _ in await backends(other, app)] == [pid]  # the same one
            nursery.cancel_scope.cancel()
        await runner.aclose()
        await eventually(lambda: _none_left(other, app))


# -- a server restart, on a throwaway cluster --

PG_BIN = Path(os.environ.get("TRIOQUEUE_PG_BIN", "/usr/lib/postgresql/15/bin"))


class Cluster:
    """A PostgreSQL cluster of its own in a temporary folder, on a free port.

    Run as the ``postgres`` user when the tests run as root (initdb refuses
    root); stopped at the end by the PID in its ``postmaster.pid``.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="trioqueue-native-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def command(self, tool: str, *args: str) -> list[str]:
        cmd = [str(PG_BIN / tool), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def pg_ctl(self, *args: str) -> list[str]:
        return self.command("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), *args)

    def create(self) -> None:
        subprocess.run(
            self.command("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N"),
            check=True,
            capture_output=True,
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\nfsync = off\n"
            )

    async def run(self, *args: str) -> None:
        await trio.run_process(self.pg_ctl("-w", "-t", "60", *args), capture_stdout=True)

    def kill(self) -> None:
        """Stop the server by its PID (immediate shutdown) and wait until it has gone."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGQUIT)
            for _ in range(3000):  # bounded: 30 s
                os.kill(pid, 0)
                time.sleep(0.01)
        except ProcessLookupError:
            return
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    missing = [t for t in ("initdb", "pg_ctl") if not (PG_BIN / t).exists()]
    if missing:
        reason = f"no {', '.join(missing)} in {PG_BIN} (set TRIOQUEUE_PG_BIN)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)", pytrace=False)
        pytest.skip(f"POSTGRESQL RESTART TEST NOT RUN: {reason}")
    c = Cluster()
    try:
        c.create()
        subprocess.run(c.pg_ctl("-w", "-t", "60", "start"), check=True, capture_output=True)
        yield c
    finally:
        c.kill()
        shutil.rmtree(c.root, ignore_errors=True)


@pytest.mark.seconds
async def test_recovers_from_a_server_restart(cluster: Cluster, app: str) -> None:
    channel = random_name("chan")
    payloads, ready = Payloads(), Calls()
    async with native(with_app(cluster.url, app), pool_size=2) as runner:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.listen, Channels([channel]), payloads, ready)
            await ready.wait(1)
            before = await pid_of(runner)
            assert await _listening(runner, app)

            await cluster.run("restart", "-m", "fast")
            # The idle connection got the server's goodbye: replaced before use.
            assert await runner.fetch("SELECT %s::int", [1]) == [(1,)]
            assert await pid_of(runner) != before
            await ready.wait(3)  # LISTEN lost, then back
            await eventually(lambda: _listening(runner, app))
            await runner.fetch("SELECT pg_notify(%s, %s)", [channel, "after restart"])
            await payloads.wait(1)

            await cluster.run("stop", "-m", "fast")
            with pytest.raises(psycopg.OperationalError) as info:  # refused while down
                await runner.fetch("SELECT 1", None)
            assert isinstance(info.value, BACKEND.transient)
            assert repr(runner) == "<NativeRunner open idle=0 busy=0 pool_size=2>"
            await cluster.run("start")
            assert await runner.fetch("SELECT 2", None) == [(2,)]
            # The listener gets back too, after its backoff (on_ready also marks
            # each failed attempt, so look at the server).
            await eventually(lambda: _listening(runner, app), seconds=15)
            await runner.fetch("SELECT pg_notify(%s, %s)", [channel, "after start"])
            await payloads.wait(2)
            assert payloads.got == ["after restart", "after start"]
            nursery.cancel_scope.cancel()
