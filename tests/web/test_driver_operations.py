"""The driver operations the board uses, on every backend: keyset listing, delete, histogram."""

from __future__ import annotations

from web.board_data import seed

from trioqueue import Status


async def test_list_tasks_before_an_id_pages_without_offset(open_backend) -> None:  # type: ignore[no-untyped-def]
    async with open_backend() as backend:
        seeded = await seed(backend, done=3, killed=2, running=1, pending=4, failed=0)
        every = sorted((i for ids in seeded.ids.values() for i in ids), reverse=True)
        pages, before = [], None
        while page := await backend.list_tasks(limit=4, before=before):
            pages.append([t.id for t in page])
            before = page[-1].id
        assert [i for p in pages for i in p] == every and len(pages) == 3
        page = await backend.list_tasks(status=Status.PENDING, before=every[1], limit=10)
        assert [t.id for t in page] == [i for i in every[2:] if i in seeded.of(Status.PENDING)]


async def test_delete_leaves_claimed_tasks_and_unknown_ids(open_backend) -> None:  # type: ignore[no-untyped-def]
    async with open_backend() as backend:
        seeded = await seed(backend, done=1, killed=1, running=1, pending=1, failed=1)
        ids = [i for ids in seeded.ids.values() for i in ids]
        assert await backend.driver.delete([*ids, "unknown"]) == 4  # type: ignore[attr-defined]
        left = await backend.list_tasks()
        assert [t.id for t in left] == seeded.of(Status.RUNNING)
        assert await backend.driver.delete([]) == 0  # type: ignore[attr-defined]


async def test_finished_histogram_counts_per_bucket_and_status(open_backend) -> None:  # type: ignore[no-untyped-def]
    async with open_backend() as backend:
        await seed(backend, done=3, killed=2, running=1, pending=1, failed=1)
        now = backend.driver.now()
        rows = await backend.driver.finished_histogram(now - 60.0, 60.0)  # type: ignore[attr-defined]
        assert sorted(rows) == [(0, Status.DONE, 3), (0, Status.KILLED, 2)]
        assert await backend.driver.finished_histogram(now + 1.0, 60.0) == []  # type: ignore[attr-defined]
        rows = await backend.driver.finished_histogram(now - 3600.0, 600.0)  # type: ignore[attr-defined]
        assert sorted(rows) == [(5, Status.DONE, 3), (5, Status.KILLED, 2)]
