"""``trioqueue.sync.Client``: a blocking app pushes while a Trio worker process runs the tasks."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from trioqueue import BackendError, CodecError, DuplicateTask, Status, TaskCancelled, TaskFailed
from trioqueue.backends._pg_statements import Statements
from trioqueue.sync import Client


@pytest.mark.seconds
def test_a_blocking_app_pushes_and_a_worker_process_runs_the_tasks(
    store_url: str, worker_process: Any
) -> None:
    with Client(store_url, queue="jobs") as client:
        tid = client.push({"n": 21})
        assert client.wait_result(tid, timeout=60) == 42
        ids = client.push_bulk({"n": i} for i in range(20))
        assert [client.wait_result(i, timeout=60) for i in ids] == [2 * i for i in range(20)]
        failed = client.push({"fail": "bad input"})
        with pytest.raises(TaskFailed, match="bad input") as info:
            client.wait_result(failed, timeout=60)
        assert info.value.task.status is Status.KILLED
        task = client.get_task(tid)
        assert task is not None and task.status is Status.DONE and task.result == 42
        assert task.worker is not None and task.finished_at is not None


@pytest.mark.seconds
def test_cancel_task_stops_a_task_running_in_the_worker_process(
    store_url: str, worker_process: Any
) -> None:
    with Client(store_url, queue="jobs") as client:
        tid = client.push({"block": True})
        assert worker_process.line() == f"started {tid}"
        assert client.cancel_task(tid)
        with pytest.raises(TaskCancelled):
            client.wait_result(tid, timeout=60)
        assert not client.cancel_task(tid)  # final now
        waiting = client.push({"n": 1}, delay=3600)
        assert client.cancel_task(waiting)
        task = client.get_task(waiting)
        assert task is not None and task.status is Status.CANCELLED


def test_push_in_a_sqlite_transaction_exists_iff_it_commits(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with Client(f"sqlite:///{path}", queue="jobs") as client:
        conn = sqlite3.connect(path)  # the app's own connection, Python's default mode
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO orders (id) VALUES (1)")
        gone = client.push_in(conn, {"order": 1})
        assert client.get_task(gone) is None  # not committed: no one else sees it
        conn.rollback()
        assert client.get_task(gone) is None
        conn.execute("INSERT INTO orders (id) VALUES (2)")
        kept = client.push_in(conn, {"order": 2}, priority=5, meta={"by": "shop"})
        conn.commit()
        task = client.get_task(kept)
        assert task is not None and task.args == {"order": 2} and task.priority == 5
        assert task.meta == {"by": "shop"} and task.queue == "jobs"
        other = sqlite3.connect(tmp_path / "other.db")
        with pytest.raises(ValueError, match="not the client's"):
            client.push_in(other, {"order": 3})
        with pytest.raises(TypeError, match=r"sqlite3\.Connection"):
            client.push_in(object(), {"order": 3})
        conn.close()
        other.close()


@pytest.mark.postgres
def test_push_in_a_psycopg_transaction_exists_iff_it_commits_and_notifies_then(
    pg_url: str,
) -> None:
    with Client(pg_url, queue="jobs") as client, psycopg.connect(pg_url, autocommit=True) as ears:
        channel = Statements("trioqueue").channel
        ears.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
        with psycopg.connect(pg_url) as conn:
            gone = client.push_in(conn, {"order": 1})
            assert client.get_task(gone) is None
            conn.rollback()
            assert client.get_task(gone) is None
            assert list(ears.notifies(timeout=0.2)) == []  # a rolled-back NOTIFY is never sent
            kept = client.push_in(conn, {"order": 2})
            conn.commit()
        got = next(ears.notifies(timeout=10))
        assert (got.channel, got.payload) == (channel, "jobs")
        task = client.get_task(kept)
        assert task is not None and task.args == {"order": 2} and task.status is Status.PENDING
        with pytest.raises(TypeError, match="psycopg Connection"):
            client.push_in(sqlite3.connect(":memory:"), {"order": 3})


def test_bad_input_gets_a_clear_error_and_stores_nothing(store_url: str) -> None:
    with Client(store_url, queue="jobs") as client:
        with pytest.raises(CodecError):
            client.push(object())
        with pytest.raises(TypeError, match="priority"):
            client.push(1, priority="high")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="delay or run_at"):
            client.push(1, delay=1, run_at=__import__("datetime").datetime.now())
        with pytest.raises(ValueError, match="if_exists"):
            client.push(1, if_exists="overwrite")  # type: ignore[arg-type]
        with pytest.raises(CodecError):
            client.push_bulk([1, 2, object()])  # all encoded first: none stored
        with pytest.raises(TypeError, match="iterable"):
            client.push_bulk("abc")
        assert client.push_bulk([]) == []
        probe = client.push(0)
        task = client.get_task(probe)
        assert task is not None and task.args == 0
    with pytest.raises(ValueError, match="memory://"):
        Client("memory://")
    with pytest.raises(ValueError, match="client URL"):
        Client("redis://localhost")
    with pytest.raises(ValueError, match="queue"):
        Client(store_url, queue="")


def test_ids_are_unique_across_queues_and_if_exists_is_honoured(store_url: str) -> None:
    with Client(store_url, queue="jobs") as client, Client(store_url, queue="other") as other:
        first = client.push(1, id="order-1")
        assert client.push(2, id="order-1") == first  # skip: nothing new
        task = client.get_task(first)
        assert task is not None and task.args == 1
        with pytest.raises(DuplicateTask) as info:
            client.push(2, id="order-1", if_exists="raise")
        assert info.value.status is Status.PENDING
        with pytest.raises(DuplicateTask, match="unique across the queues"):
            other.push(3, id="order-1")
        client.push(4, id="order-1", if_exists="replace_finished")  # not finished: kept
        assert client.get_task(first).args == 1  # type: ignore[union-attr]
        assert client.cancel_task(first)
        client.push(5, id="order-1", if_exists="replace_finished")
        again = client.get_task(first)
        assert again is not None and again.args == 5 and again.status is Status.PENDING


def test_threads_share_one_client(store_url: str) -> None:
    with Client(store_url, queue="jobs", pool_size=3) as client:
        ids: list[str] = []
        lock = threading.Lock()

        def push_some(k: int) -> None:
            for i in range(25):
                tid = client.push({"k": k, "i": i})
                with lock:
                    ids.append(tid)

        threads = [threading.Thread(target=push_some, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(ids)) == 150
        tasks = [client.get_task(i) for i in ids]
        assert all(t is not None and t.queue == "jobs" for t in tasks)


def test_wait_result_times_out_and_knows_unknown_ids(store_url: str) -> None:
    with Client(store_url, queue="jobs") as client:
        tid = client.push(1, delay=3600)
        with pytest.raises(TimeoutError, match="pending"):
            client.wait_result(tid, timeout=0.05)
        with pytest.raises(LookupError, match="no task"):
            client.wait_result("no-such-id", timeout=5)


def test_a_store_without_tables_is_refused_without_migrate(store_url: str) -> None:
    with pytest.raises(BackendError):
        Client(store_url, migrate=False)
