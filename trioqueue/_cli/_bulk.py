"""The commands that change many tasks at once: retry, cancel (one id or a filter) and purge.

A filter (``--status``, ``--queue``) selects tasks; ``--dry-run`` counts
them and changes nothing; on a terminal the command asks before it changes
anything (``--yes`` skips the question). Each prints how many it changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._backend import Backend
from .._flow._admin import BulkRetry, refusal
from .._task import Status, Task
from ._backends import open_backend_of
from ._commands import find_task
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError

__all__ = ["cmd_cancel", "cmd_purge", "cmd_retry", "confirm", "select"]

#: Tasks read per page when a filter selects them.
PAGE = 500

_RETRYABLE = (Status.FAILED, Status.KILLED)
_CANCELLABLE = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.FAILED)
_FINAL = (Status.DONE, Status.KILLED, Status.CANCELLED)


_ONLY = {"retry": "only failed or killed tasks", "cancel": "only a task that has not finished"}


def _plural(n: int, what: str = "task") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


async def confirm(args: argparse.Namespace, question: str) -> bool:
    """Ask ``question`` on a terminal (True without a terminal, or with ``--yes``)."""
    if args.yes or not sys.stdin.isatty():
        return True
    answer = await trio.to_thread.run_sync(input, f"{question} [y/N] ", abandon_on_cancel=True)
    return answer.strip().lower() in ("y", "yes")


def _statuses(args: argparse.Namespace, allowed: tuple[Status, ...], verb: str) -> list[Status]:
    chosen: list[Status] = list(dict.fromkeys(args.status or allowed))
    wrong = [s.value for s in chosen if s not in allowed]
    if wrong:
        can = ", ".join(s.value for s in allowed)
        raise CliError(EXIT_USAGE, f"cannot {verb} {', '.join(wrong)} tasks: only {can}")
    return chosen


async def select(
    backend: Backend,
    *,
    queue: str | None,
    statuses: list[Status],
    keep: Callable[[Task[Any]], bool] = lambda t: True,
) -> list[str]:
    """Return the ids of every task of ``queue`` (None: all) in ``statuses`` that ``keep`` keeps.

    The ids are read first, page by page, so changing them after cannot
    shift the pages.
    """
    ids: list[str] = []
    for status in statuses:
        offset = 0
        while True:
            page = await backend.list_tasks(queue=queue, status=status, limit=PAGE, offset=offset)
            ids += [str(t.id) for t in page if keep(t)]
            if len(page) < PAGE:
                break
            offset += PAGE
    return ids


async def _each(
    args: argparse.Namespace,
    verbs: tuple[str, str],
    allowed: tuple[Status, ...],
    act: Callable[[Backend], _Act],
) -> int:
    do, verb = verbs
    if args.id is not None:
        if args.status or args.queue:
            raise CliError(EXIT_USAGE, "give a task id or a filter (--status, --queue), not both")
        async with open_backend_of(args) as backend:
            task = await find_task(backend, args.id)
            acting = act(backend)
            acting.keep(task)
            if not await acting(str(task.id)):
                now = await find_task(backend, str(task.id))
                why = await refusal(backend, now) if do == "retry" else None
                raise CliError(
                    EXIT_FAILED,
                    why or f"task {task.id} is {now.status.value}: {_ONLY[do]} can be {verb}",
                )
            after = await backend.get_task(str(task.id))
        _said(verb, str(task.id), after)
        _resumed(acting)
        return EXIT_OK
    if not args.status and not args.queue:
        raise CliError(EXIT_USAGE, "give a task id, or --status and/or --queue to select tasks")
    statuses = _statuses(args, allowed, do)
    async with open_backend_of(args) as backend:
        acting = act(backend)
        ids = await select(backend, queue=args.queue, statuses=statuses, keep=acting.keep)
        where = f" in queue {args.queue!r}" if args.queue else ""
        what = f"{_plural(len(ids))} ({', '.join(s.value for s in statuses)}){where}"
        if args.dry_run:
            print(f"would have {verb} {what}")
            return EXIT_OK
        if ids and not await confirm(args, f"{do} {what}?"):
            print("nothing changed")
            return EXIT_FAILED
        n = 0
        for id in ids:
            n += bool(await acting(id))
    print(f"{verb} {_plural(n)}{where}")
    _resumed(acting)
    return EXIT_OK


class _Act:
    """One id at a time: ``keep`` (is it to be acted on?) and the call."""

    def __init__(self, call: Callable[[str], Awaitable[bool]]) -> None:
        self.call = call

    def keep(self, task: Task[Any]) -> bool:
        return True

    async def __call__(self, id: str) -> bool:
        return await self.call(id)


class _Retry(_Act):
    # A run record is left out of a filter: the retry of its node resumes it.
    def __init__(self, backend: Backend) -> None:
        self.bulk = BulkRetry(backend)
        super().__init__(self.bulk.retry)

    def keep(self, task: Task[Any]) -> bool:
        return self.bulk.keep(task)


def _resumed(acting: _Act) -> None:
    runs = sorted(acting.bulk.resumed) if isinstance(acting, _Retry) else []
    if len(runs) == 1:
        print(f"resumed workflow run {runs[0]}: its unfinished nodes run again")
    elif runs:
        print(f"resumed {len(runs)} workflow runs: their unfinished nodes run again")


def _said(verb: str, id: str, now: Task[Any] | None) -> None:
    if verb != "cancelled" or now is None or now.status is Status.CANCELLED:
        print(f"{verb} {id}")
    elif now.status is Status.QUEUED:
        print(f"cancellation requested for {id} (queued): the worker that claimed it cancels it")
    else:
        print(
            f"cancellation requested for {id} ({now.status.value}): the worker running it stops it"
        )


async def cmd_retry(args: argparse.Namespace) -> int:
    """Make failed or killed tasks (one, or those a filter selects) run again now.

    A filter leaves workflow run records out: retrying a node of a killed
    run resumes the run. A run id given alone resumes that run.
    """
    return await _each(args, ("retry", "retried"), _RETRYABLE, _Retry)


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel unfinished tasks (one, or those a filter selects)."""
    return await _each(args, ("cancel", "cancelled"), _CANCELLABLE, lambda b: _Act(b.cancel_task))


async def cmd_purge(args: argparse.Namespace) -> int:
    """Delete finished tasks (of the chosen statuses) older than ``--older-than``."""
    statuses = _statuses(args, _FINAL, "purge")
    async with open_backend_of(args) as backend:
        cutoff = backend.driver.now() - args.older_than

        def old(t: Task[Any]) -> bool:
            return t.finished_at is None or t.finished_at.timestamp() <= cutoff

        where = f" in queue {args.queue!r}" if args.queue else ""
        if args.dry_run or args.queue is not None or not args.yes:
            ids = await select(backend, queue=args.queue, statuses=statuses, keep=old)
            what = f"{_plural(len(ids))} ({', '.join(s.value for s in statuses)}){where}"
            if args.dry_run:
                print(f"would purge {what}")
                return EXIT_OK
            if not ids:
                print(f"purged 0 tasks{where}")
                return EXIT_OK
            if not await confirm(args, f"purge {what}?"):
                print("nothing changed")
                return EXIT_FAILED
        if args.queue is not None:
            # One queue: the selected ids, deleted in pages (a task retried
            # or claimed since is no longer final and is kept).
            n = 0
            for start in range(0, len(ids), PAGE):
                n += await _delete_finished(backend, ids[start : start + PAGE])
        elif set(statuses) == set(_FINAL):
            n = await backend.purge(older_than=args.older_than)
        else:
            n = 0
            before = dict.fromkeys(statuses, cutoff)
            while True:  # in batches, as retention does; of every queue, asked for
                got = await backend.driver.prune(None, before, PAGE, 0.0)  # no worker is that old
                n += got
                if got < PAGE:
                    break
    print(f"purged {_plural(n)}")
    return EXIT_OK


async def _delete_finished(backend: Any, ids: list[str]) -> int:
    """Delete those of ``ids`` that are still final (read again just before)."""
    recs = await backend.driver.get_many(ids)
    final = [r.id for r in recs if r.status.is_final]
    return int(await backend.driver.delete(final)) if final else 0
