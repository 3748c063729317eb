"""SQLite listings of tasks: by queue, by status through that status's own index, paged.

Re-exported by ``_sqlite_statements.py``, where every other statement is.
"""

from __future__ import annotations

from .._task import Status
from ._columns import TEXT_COLUMNS
from ._sqlite_schema import FINISHED, RARE

__all__ = [
    "BELOW",
    "LIST_PROBE",
    "LIST_PROBES",
    "LIST_TASKS",
    "LIST_TASKS_OF_STATUS",
    "LIST_TASKS_OF_STATUS_BY_ID",
]

_COLS = TEXT_COLUMNS.select
_ANY_BEFORE = "(:before IS NULL OR id < :before)"
LIST_TASKS = f"""
SELECT {_COLS} FROM trioqueue_tasks
WHERE (:queue IS NULL OR queue = :queue)
  AND {_ANY_BEFORE}
ORDER BY id DESC LIMIT :limit OFFSET :offset
"""

#: Up to this many tasks in a status's own index, a listing of PENDING or
#: DONE tasks reads that index and sorts; past it, it walks the ids from the
#: newest (those tasks are then likely among the newest).
LIST_PROBE = 10_000
#: The index each status is listed by, and the predicate that allows it. The
#: statuses few tasks have share a (status, id) index (in id order); QUEUED and
#: RUNNING tasks are few (at most what workers hold) and read the lease index.
_STATUS_INDEX = {
    Status.PENDING: ("trioqueue_tasks_claim", "status IN ('pending', 'failed')"),
    Status.QUEUED: ("trioqueue_tasks_lease", "status IN ('queued', 'running')"),
    Status.RUNNING: ("trioqueue_tasks_lease", "status IN ('queued', 'running')"),
    Status.DONE: ("trioqueue_tasks_finished", FINISHED),
    Status.FAILED: ("trioqueue_tasks_status_rare", RARE),
    Status.KILLED: ("trioqueue_tasks_status_rare", RARE),
    Status.CANCELLED: ("trioqueue_tasks_status_rare", RARE),
}


def _list_of(status: Status, index: str) -> str:
    # SQLite uses a partial index only for a WHERE holding its predicate's terms.
    among = _STATUS_INDEX[status][1]
    return f"""
SELECT {_COLS} FROM trioqueue_tasks INDEXED BY {index}
WHERE {among} AND status = '{status.value}' AND (:queue IS NULL OR queue = :queue)
  AND {_ANY_BEFORE}
ORDER BY id DESC LIMIT :limit OFFSET :offset
"""


#: A listing of one status by its own index (the status is written in the text:
#: a partial index serves only a query whose WHERE implies its own).
LIST_TASKS_OF_STATUS = {st: _list_of(st, index) for st, (index, _) in _STATUS_INDEX.items()}
#: The same, walking the ids from the newest (PENDING and DONE past ``LIST_PROBE``).
LIST_TASKS_OF_STATUS_BY_ID = {
    st: _list_of(st, "sqlite_autoindex_trioqueue_tasks_1") for st in (Status.PENDING, Status.DONE)
}
#: Each listing with ``before`` given: its bound a range of the index read
#: (``(:before IS NULL OR id < :before)`` is no range for SQLite's planner, so
#: each page of a walk would read again every entry above it).
BELOW = {
    query: query.replace(_ANY_BEFORE, "id < :before")
    for query in (
        LIST_TASKS,
        *LIST_TASKS_OF_STATUS.values(),
        *LIST_TASKS_OF_STATUS_BY_ID.values(),
    )
}
#: How many entries (up to ``LIST_PROBE`` + 1) the index of PENDING or DONE holds.
LIST_PROBES = {
    st: f"SELECT count(*) FROM (SELECT 1 FROM trioqueue_tasks INDEXED BY {index} "
    f"WHERE {among} LIMIT {LIST_PROBE + 1})"
    for st, (index, among) in _STATUS_INDEX.items()
    if st in LIST_TASKS_OF_STATUS_BY_ID
}
