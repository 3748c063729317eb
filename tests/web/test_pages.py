"""Every page of the board, through its ASGI app, on every backend."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from web.board_data import HOSTILE_ERROR, HOSTILE_ID, seed
from web.conftest import BoardClient, client_of

import trioqueue as tq
from trioqueue import Status
from trioqueue.drivers import ScheduleRecord, WorkerRecord
from trioqueue.web import RunGraph, RunNode


def ids_in(html: str) -> list[str]:
    """The task ids a task list links to, in order (as the page shows them, unescaped)."""
    import html as h

    return [
        h.unescape(m)
        for m in re.findall(r'class="task-link" href="/task\?id=[^"]*"><code>([^<]*)<', html)
    ]


async def test_overview_counts_each_queue_and_status_with_links(board: BoardClient) -> None:
    r = await board.http.get("/")
    assert r.status_code == 200
    assert "<title>Overview · trioqueue</title>" in r.text
    for status, n in [("killed", 2), ("done", 2), ("pending", 2), ("running", 1), ("failed", 1)]:
        assert f'href="/tasks?queue=mail&amp;status={status}">{n}</a>' in r.text, status
    assert '<meta http-equiv="refresh" content="5">' in r.text
    # The charts count what finished within the hour: 2 done, 2 killed.
    assert "done (2)" in r.text and "killed (2)" in r.text
    assert r.text.count('<svg class="chart"') == 2
    # The oldest ready task of the queue (seeded 5 s in the past) has waited about that long.
    age = float(re.search(r"<td>([\d.]+) s</td>", r.text).group(1))  # type: ignore[union-attr]
    assert 4.0 <= age < 120.0


async def test_tasks_filters_by_status_and_queue(board: BoardClient) -> None:
    r = await board.http.get("/tasks", params={"status": "killed"})
    assert r.status_code == 200
    assert sorted(ids_in(r.text)) == sorted(board.seeded.of(Status.KILLED))
    r = await board.http.get("/tasks", params={"queue": "other"})
    assert ids_in(r.text) == [] and "No task matches." in r.text
    r = await board.http.get("/tasks", params={"status": "bogus"})
    assert r.status_code == 400 and "unknown status" in r.text


async def test_tasks_pages_by_key_newest_first(board: BoardClient) -> None:
    every = sorted((i for ids in board.seeded.ids.values() for i in ids), reverse=True)
    seen: list[str] = []
    url = "/tasks?limit=3"
    pages = 0
    while url:
        r = await board.http.get(url.replace("&amp;", "&"))
        page = ids_in(r.text)
        assert 0 < len(page) <= 3
        seen += page
        pages += 1
        m = re.search(r'<a rel="next" href="([^"]*)">', r.text)
        url = m.group(1) if m else ""
    assert seen == every
    assert pages == -(-len(every) // 3)


async def test_search_by_id_opens_the_task_or_says_it_is_missing(board: BoardClient) -> None:
    done = board.seeded.of(Status.DONE)[0]
    r = await board.http.get("/tasks", params={"id": done})
    assert r.status_code == 303 and r.headers["location"] == f"/task?id={done}"
    r = await board.http.get("/tasks", params={"id": "no-such-task"})
    assert r.status_code == 200 and "There is no task with id" in r.text


async def test_task_page_shows_args_result_times_and_worker(board: BoardClient) -> None:
    id = board.seeded.of(Status.DONE)[0]
    task = await board.backend.get_task(id)
    assert task is not None and task.finished_at is not None
    r = await board.http.get("/task", params={"id": id})
    assert r.status_code == 200
    assert 'id="status" class="status st-done">done<' in r.text
    assert "user1@example.com" in r.text and "&#34;sent&#34;: 1" in r.text
    assert "worker-1@host:1" in r.text
    assert task.finished_at.strftime("%Y-%m-%d %H:%M:%S") in r.text
    assert "1 of 3" in r.text
    assert 'http-equiv="refresh"' not in r.text  # final: nothing left to watch
    assert 'id="retry"' not in r.text and 'id="delete"' in r.text


async def test_task_page_shows_error_and_traceback_and_refreshes_while_unfinished(
    board: BoardClient,
) -> None:
    id = board.seeded.of(Status.FAILED)[0]
    r = await board.http.get("/task", params={"id": id})
    assert "RuntimeError: smtp down" in r.text and "Traceback (most recent call last)" in r.text
    assert 'http-equiv="refresh"' in r.text
    assert 'id="retry"' in r.text and 'id="cancel"' in r.text
    r = await board.http.get("/task", params={"id": "nope"})
    assert r.status_code == 404


async def test_hostile_ids_errors_and_args_are_escaped(board: BoardClient) -> None:
    pages = [
        await board.http.get("/tasks"),
        await board.http.get("/tasks", params={"status": "killed"}),
        await board.http.get("/task", params={"id": HOSTILE_ID}),
        await board.http.get("/tasks", params={"id": "<b>missing</b>"}),
    ]
    for r in pages:
        assert "<script>" not in r.text and "<img" not in r.text and "<b>missing" not in r.text
    assert "&lt;script&gt;alert(&#34;id&#34;)&lt;/script&gt;" in pages[2].text
    assert (
        HOSTILE_ERROR.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
        in pages[2].text
    )


async def test_hostile_queue_name_is_escaped(open_backend) -> None:  # type: ignore[no-untyped-def]
    async with open_backend() as backend:
        await seed(backend, queue='q"><script>x()</script>', done=1, killed=0, running=0)
        async with client_of(backend) as http:
            for path in ("/", "/queues", "/tasks"):
                r = await http.get(path)
                assert r.status_code == 200 and "<script>x()" not in r.text, path


async def test_workers_page_lists_live_workers_with_running_counts(board: BoardClient) -> None:
    now = board.backend.driver.now()
    for name, running in (("w-a@h:1", 2), ("w-b@h:2", 3)):
        await board.backend.driver.register_worker(
            WorkerRecord(name, "h", 1, "mail", 8, running, now)
        )
    r = await board.http.get("/workers")
    assert r.status_code == 200
    assert "w-a@h:1" in r.text and "w-b@h:2" in r.text
    assert '<span class="pill">mail: 5</span>' in r.text


async def test_queues_page_shows_paused_queues(board: BoardClient) -> None:
    await board.backend.pause("idle")
    r = await board.http.get("/queues")
    assert r.status_code == 200
    row = r.text[r.text.index(">idle<") :]
    assert '<span class="badge">paused</span>' in row[:200]
    assert 'action="/queue/resume"' in row


async def test_queues_page_shows_each_queues_retention(board: BoardClient) -> None:
    await board.backend.push(1)
    await board.backend.pause("audit")
    await board.backend.set_retention("audit", None)
    await board.backend.pause("mail")
    await board.backend.set_retention("mail", tq.Retention(done=timedelta(hours=2)))
    r = await board.http.get("/queues")
    assert r.status_code == 200
    assert "<th>retention</th>" in r.text

    def row(queue: str) -> str:
        start = r.text.index(f">{queue}<")
        return r.text[start : r.text.index("</tr>", start)]

    assert "<td>every finished task kept</td>" in row("audit")
    assert "<td>done 2h, killed 7d, cancelled 7d</td>" in row("mail")
    default = board.backend.retention_default
    assert default is not None and default.done == timedelta(days=1)
    assert "<td>default: done 1d, killed 7d, cancelled 7d</td>" in row(board.backend.queue)


async def test_static_stylesheet_and_security_headers(board: BoardClient) -> None:
    r = await board.http.get("/static/board.css")
    assert r.status_code == 200 and "svg.chart" in r.text
    page = await board.http.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # nothing external


async def test_schedules_page_shows_what_storage_keeps_of_each_schedule(
    board: BoardClient,
) -> None:
    r = await board.http.get("/schedules")
    assert r.status_code == 200 and "nightly" not in r.text
    assert 'href="/schedules"' in (await board.http.get("/")).text
    tick = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    await board.backend.driver.record_schedule(
        ScheduleRecord("nightly<b>", "default", "4 3 * * *", None, "UTC", None, tick)
    )
    r = await board.http.get("/schedules")
    assert r.status_code == 200
    assert "nightly&lt;b&gt;" in r.text and "nightly<b>" not in r.text
    assert "2030-01-02 03:04:05Z" in r.text and "4 3 * * *" in r.text
    assert "<th>last_tick</th>" in r.text and "<th>next_tick</th>" in r.text
    assert "<th>state</th>" in r.text and "<td>live</td>" in r.text and "stale" not in r.text
    # A record whose next tick passed long ago unwritten: no worker runs it.
    await board.backend.driver.record_schedule(
        ScheduleRecord("gone@host:4242:every:5s", "default", None, 5.0, "UTC", None, tick - 1e9)
    )
    r = await board.http.get("/schedules")
    assert r.text.count("<td>stale</td>") == 1 and r.text.count("<td>live</td>") == 1


async def test_a_driver_without_schedules_has_no_schedules_page(board: BoardClient) -> None:
    cls = type(board.backend.driver)
    own = vars(cls).get("schedules")
    cls.schedules = None  # type: ignore[assignment,method-assign]
    try:
        r = await board.http.get("/schedules")
        assert r.status_code == 404 and "keeps no schedules" in r.text
        assert 'href="/schedules"' not in (await board.http.get("/")).text
    finally:
        if own is None:
            del cls.schedules
        else:
            cls.schedules = own  # type: ignore[method-assign]


async def test_task_page_draws_the_run_graph_from_the_hook(board: BoardClient) -> None:
    done, killed = board.seeded.of(Status.DONE)[0], board.seeded.of(Status.KILLED)[0]

    async def run_graph(task_id: str) -> RunGraph | None:
        if task_id != done:
            return None
        nodes = [RunNode("fetch", done, Status.DONE), RunNode("parse", killed, Status.KILLED),
                 RunNode("store")]  # fmt: skip
        return RunGraph("run-1", nodes, [("fetch", "parse"), ("parse", "store")])

    object.__setattr__(board.backend, "run_graph", run_graph)
    try:
        r = await board.http.get("/task", params={"id": done})
        assert '<svg class="graph"' in r.text
        assert r.text.count('class="edge"') == 2
        assert 'class="node done current"' in r.text and 'class="node killed"' in r.text
        assert 'class="node absent"' in r.text and "not created" in r.text
        r = await board.http.get("/task", params={"id": killed})
        assert '<svg class="graph"' not in r.text
    finally:
        object.__delattr__(board.backend, "run_graph")
