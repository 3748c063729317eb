"""Every action of the board through its ASGI app, on every backend: what it does to the
store, what it refuses, and the log line it leaves."""

from __future__ import annotations

import logging
import re

import pytest
from web.board_data import seed
from web.conftest import BoardClient, client_of

from trioqueue import Status


async def status_of(board: BoardClient, id: str) -> Status | None:
    task = await board.backend.get_task(id)
    return None if task is None else task.status


async def test_retry_a_killed_task_makes_it_pending_and_logs_it(
    board: BoardClient, caplog: pytest.LogCaptureFixture
) -> None:
    id = board.seeded.of(Status.KILLED)[-1]
    caplog.set_level(logging.INFO, logger="trioqueue.web")
    r = await board.post("/task/retry", id=id)
    assert r.status_code == 303 and r.headers["location"].startswith("/task?id=")
    assert await status_of(board, id) is Status.PENDING
    page = await board.http.get(r.headers["location"])
    assert "Retried 1 task(s)." in page.text and ">pending<" in page.text
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "trioqueue.web"]
    assert any(line.startswith(f"retry task {id!r} from ") for line in lines), lines
    assert not any("example.com" in line for line in lines)  # no payload in the log


async def test_retry_of_a_done_task_is_refused_and_changes_nothing(board: BoardClient) -> None:
    id = board.seeded.of(Status.DONE)[0]
    r = await board.post("/task/retry", id=id)
    assert "done=refused" in r.headers["location"]
    assert await status_of(board, id) is Status.DONE


async def test_cancel_a_pending_task_at_once_and_flag_a_running_one(board: BoardClient) -> None:
    pending = board.seeded.of(Status.PENDING)[0]
    running = board.seeded.of(Status.RUNNING)[0]
    await board.post("/task/cancel", id=pending)
    assert await status_of(board, pending) is Status.CANCELLED
    r = await board.post("/task/cancel", id=running)
    assert "done=cancelled" in r.headers["location"]
    rec = await board.backend.driver.get(running)
    assert rec is not None and rec.cancel_requested and rec.status is Status.RUNNING


async def test_delete_one_task_but_never_a_running_one(board: BoardClient) -> None:
    done = board.seeded.of(Status.DONE)[0]
    running = board.seeded.of(Status.RUNNING)[0]
    r = await board.post("/task/delete", id=done)
    assert r.headers["location"].startswith("/tasks?done=deleted")
    assert await status_of(board, done) is None
    r = await board.post("/task/delete", id=running)
    assert "done=refused" in r.headers["location"]
    assert await status_of(board, running) is Status.RUNNING


async def test_bulk_retry_shows_the_count_then_retries_every_killed_task(
    board: BoardClient,
) -> None:
    killed = board.seeded.of(Status.KILLED)
    r = await board.post("/bulk", action="retry", queue="mail", status="killed")
    assert r.status_code == 200
    assert f'<strong id="bulk-count">{len(killed)}</strong>' in r.text
    assert all([await status_of(board, id) is Status.KILLED for id in killed])  # not yet
    r = await board.post(
        "/bulk", action="retry", queue="mail", status="killed", confirm=len(killed)
    )
    assert r.status_code == 303 and f"n={len(killed)}" in r.headers["location"]
    assert [await status_of(board, id) for id in killed] == [Status.PENDING] * len(killed)


async def test_bulk_delete_by_filter_never_goes_past_the_confirmed_count(
    board: BoardClient,
) -> None:
    r = await board.post("/bulk", action="delete", queue="mail")
    count = int(re.search(r'id="bulk-count">(\d+)<', r.text).group(1))  # type: ignore[union-attr]
    unclaimed = [id for s, ids in board.seeded.ids.items() if s is not Status.RUNNING for id in ids]
    assert count == len(unclaimed)
    r = await board.post("/bulk", action="delete", queue="mail", confirm=3)
    assert "n=3" in r.headers["location"]
    left = await board.backend.list_tasks(limit=100)
    assert len(left) == len(unclaimed) + 1 - 3
    assert board.seeded.of(Status.RUNNING)[0] in [t.id for t in left]


async def test_bulk_cancel_by_status_across_queues(open_backend) -> None:  # type: ignore[no-untyped-def]
    async with open_backend() as backend:
        a = await seed(backend, queue="a", done=1, killed=0, running=0, pending=2, failed=0)
        b = await seed(backend, queue="b", prefix="u", done=0, killed=0, running=0, pending=3)
        async with client_of(backend) as http:
            board = BoardClient(backend, a, http)
            r = await board.post("/bulk", action="cancel", status="pending")
            assert '<strong id="bulk-count">5</strong>' in r.text
            await board.post("/bulk", action="cancel", status="pending", confirm=5)
        for id in a.of(Status.PENDING) + b.of(Status.PENDING):
            assert (await backend.get_task(id)).status is Status.CANCELLED  # type: ignore[union-attr]
        assert (await backend.get_task(a.of(Status.DONE)[0])).status is Status.DONE  # type: ignore[union-attr]


async def test_bulk_actions_on_thousands_of_tasks(open_backend) -> None:  # type: ignore[no-untyped-def]
    # 2,000 ids take far more than one PostgreSQL NOTIFY's 8,000 bytes.
    async with open_backend(queue="big") as backend, client_of(backend) as http:
        board = BoardClient(backend, await seed(backend, queue="small"), http)
        ids = await backend.push_bulk([{"n": n} for n in range(2000)])
        r = await board.post("/bulk", action="cancel", queue="big", confirm=2000)
        assert "n=2000" in r.headers["location"]
        r = await board.post("/bulk", action="delete", queue="big")
        assert '<strong id="bulk-count">2000</strong>' in r.text
        r = await board.post("/bulk", action="delete", queue="big", confirm=2000)
        assert "n=2000" in r.headers["location"]
        assert await backend.get_task(str(ids[0])) is None
        assert (await backend.counts(queue="big")).get("big", {}) == {}


async def test_purge_by_age_deletes_only_finished_tasks_that_old(board: BoardClient) -> None:
    r = await board.post("/purge", older_than="1h")
    assert "n=0" in r.headers["location"]
    r = await board.post("/purge", older_than="0s")
    finished = len(board.seeded.of(Status.DONE)) + len(board.seeded.of(Status.KILLED))
    assert f"n={finished}" in r.headers["location"]
    page = await board.http.get(r.headers["location"])
    assert f"Purged {finished} finished task(s)." in page.text
    r = await board.post("/purge", older_than="soon")
    assert r.status_code == 400 and "not an age" in r.text


async def test_pause_and_resume_a_queue(board: BoardClient) -> None:
    await board.post("/queue/pause", queue="mail")
    assert await board.backend.paused() == ["mail"]
    await board.post("/queue/resume", queue="mail")
    assert await board.backend.paused() == []
    r = await board.post("/queue/pause", queue="")
    assert r.status_code == 400 and await board.backend.paused() == []


@pytest.mark.parametrize(
    "csrf",
    [None, "", "wrong-token-of-the-right-length-0123456789abcdef"],
    ids=["missing", "empty", "wrong"],
)
async def test_actions_without_the_csrf_token_are_refused(
    board: BoardClient, csrf: str | None
) -> None:
    await board.csrf()  # the browser holds a cookie; the forged form lacks it
    id = board.seeded.of(Status.KILLED)[0]
    data = {"id": id} if csrf is None else {"id": id, "csrf": csrf}
    for path, form in [("/task/retry", data), ("/task/delete", data),
                       ("/bulk", {**data, "action": "delete", "confirm": "99"}),
                       ("/purge", {**data, "older_than": "0s"}),
                       ("/queue/pause", {**data, "queue": "mail"})]:  # fmt: skip
        r = await board.http.post(path, data=form)
        assert r.status_code == 403 and "CSRF" in r.text, path
    assert await status_of(board, id) is Status.KILLED
    assert len(await board.backend.list_tasks(limit=100)) == sum(
        map(len, board.seeded.ids.values())
    )
    assert await board.backend.paused() == []


async def test_an_action_from_another_origin_is_refused(board: BoardClient) -> None:
    token = await board.csrf()
    id = board.seeded.of(Status.KILLED)[0]
    r = await board.http.post(
        "/task/retry", data={"id": id, "csrf": token}, headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert await status_of(board, id) is Status.KILLED


async def test_unknown_action_and_oversized_form_are_refused(board: BoardClient) -> None:
    r = await board.post("/task/explode", id="x")
    assert r.status_code == 404
    r = await board.post("/task/retry", id="x" * 20_000)
    assert r.status_code == 413


async def test_read_only_board_shows_no_forms_and_refuses_every_action(board: BoardClient) -> None:
    id = board.seeded.of(Status.KILLED)[0]
    async with client_of(board.backend, read_only=True) as http:
        ro = BoardClient(board.backend, board.seeded, http)
        page = await http.get("/task", params={"id": id})
        assert '<form method="post"' not in page.text and "read-only" in page.text
        for path in ("/task/retry", "/task/delete", "/bulk", "/purge", "/queue/pause"):
            r = await ro.post(path, id=id, action="delete", confirm=99, older_than="0s", queue="m")
            assert r.status_code == 403 and "read-only" in r.text, path
    assert await status_of(board, id) is Status.KILLED
