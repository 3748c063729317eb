"""The commands that change many tasks at once: retry, cancel (one id or a filter) and purge.

A filter (``--status``, ``--queue``) selects tasks; ``--dry-run`` counts
them and changes nothing; on a terminal the command asks before it changes
anything (``--yes`` skips the question), and then changes no more tasks than
it named. Each prints how many it changed. A filter is applied in pages
(``trioqueue._bulk``): bounded memory and statements for any number of tasks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._backend import Backend
from .._bulk import FINAL, BulkAction, bulk_apply, bulk_count, purge_finished, walk
from .._driver import StoredTask
from .._flow._admin import BulkRetry, refusal
from .._task import Status, Task
from ._backends import open_backend_of
from ._commands import find_task
from ._errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError

__all__ = ["cmd_cancel", "cmd_purge", "cmd_retry", "confirm"]

_RETRYABLE = (Status.FAILED, Status.KILLED)
_CANCELLABLE = (Status.PENDING, Status.QUEUED, Status.RUNNING, Status.FAILED)


_ONLY = {"retry": "only failed or killed tasks", "cancel": "only a task that has not finished"}


def _plural(n: int, what: str = "task") -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _asks(args: argparse.Namespace) -> bool:
    """Whether ``confirm`` will ask (on a terminal, without ``--yes``)."""
    return not args.yes and sys.stdin.isatty()


async def confirm(args: argparse.Namespace, question: str) -> bool:
    """Ask ``question`` on a terminal (True without a terminal, or with ``--yes``)."""
    if not _asks(args):
        return True
    answer = await trio.to_thread.run_sync(input, f"{question} [y/N] ", abandon_on_cancel=True)
    return answer.strip().lower() in ("y", "yes")


async def _ask(
    args: argparse.Namespace,
    would: str,
    do: str,
    count: int,
    statuses: list[Status],
    where: str,
) -> int | None:
    """Say what a dry run would do, or ask before ``do``: the exit code to stop with, or None."""
    what = f"{_plural(count)} ({', '.join(s.value for s in statuses)}){where}"
    if args.dry_run:
        print(f"would {would} {what}")
        return EXIT_OK
    if count and not await confirm(args, f"{do} {what}?"):
        print("nothing changed")
        return EXIT_FAILED
    return None


def _statuses(args: argparse.Namespace, allowed: tuple[Status, ...], verb: str) -> list[Status]:
    chosen: list[Status] = list(dict.fromkeys(args.status or allowed))
    wrong = [s.value for s in chosen if s not in allowed]
    if wrong:
        can = ", ".join(s.value for s in allowed)
        raise CliError(EXIT_USAGE, f"cannot {verb} {', '.join(wrong)} tasks: only {can}")
    return chosen


async def _each(
    args: argparse.Namespace,
    verbs: tuple[BulkAction, str],
    allowed: tuple[Status, ...],
    act: Callable[[Backend, str], Awaitable[bool]],
) -> int:
    do, verb = verbs
    if args.id is not None:
        if args.status or args.queue:
            raise CliError(EXIT_USAGE, "give a task id or a filter (--status, --queue), not both")
        async with open_backend_of(args) as backend:
            task = await find_task(backend, args.id)
            runs = BulkRetry(backend) if do == "retry" else None
            if runs is not None:
                runs.keep(task)
            done = await (act(backend, str(task.id)) if runs is None else runs.retry(str(task.id)))
            if not done:
                now = await find_task(backend, str(task.id))
                why = await refusal(backend, now) if runs is not None else None
                raise CliError(
                    EXIT_FAILED,
                    why or f"task {task.id} is {now.status.value}: {_ONLY[do]} can be {verb}",
                )
            after = await backend.get_task(str(task.id))
        _said(verb, str(task.id), after)
        _resumed(runs)
        return EXIT_OK
    if not args.status and not args.queue:
        raise CliError(EXIT_USAGE, "give a task id, or --status and/or --queue to select tasks")
    statuses = _statuses(args, allowed, do)
    where = f" in queue {args.queue!r}" if args.queue else ""
    async with open_backend_of(args) as backend:
        at_most: int | None = None
        if args.dry_run or _asks(args):
            counts = await backend.counts(queue=args.queue)
            at_most = sum(per.get(s, 0) for per in counts.values() for s in statuses)
            stop = await _ask(args, f"have {verb}", do, at_most, statuses, where)
            if stop is not None:
                return stop
        # In pages (``bulk_apply``); after a question, no more tasks than it named.
        runs = BulkRetry(backend) if do == "retry" else None
        n = await bulk_apply(
            backend, do, queue=args.queue, statuses=statuses, at_most=at_most, runs=runs
        )
    print(f"{verb} {_plural(n)}{where}")
    _resumed(runs)
    return EXIT_OK


def _resumed(runs: BulkRetry | None) -> None:
    resumed = sorted(runs.resumed) if runs is not None else []
    if len(resumed) == 1:
        print(f"resumed workflow run {resumed[0]}: its unfinished nodes run again")
    elif resumed:
        print(f"resumed {len(resumed)} workflow runs: their unfinished nodes run again")


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
    return await _each(args, ("retry", "retried"), _RETRYABLE, lambda b, id: b.retry_task(id))


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel unfinished tasks (one, or those a filter selects)."""
    return await _each(args, ("cancel", "cancelled"), _CANCELLABLE, lambda b, id: b.cancel_task(id))


async def cmd_purge(args: argparse.Namespace) -> int:
    """Delete finished tasks (of the chosen statuses) older than ``--older-than``."""
    statuses = _statuses(args, FINAL, "purge")
    async with open_backend_of(args) as backend:
        cutoff = backend.driver.now() - args.older_than

        def old(t: StoredTask) -> bool:
            return t.finished_at is None or t.finished_at <= cutoff

        where = f" in queue {args.queue!r}" if args.queue else ""
        if args.dry_run or _asks(args):
            count = await bulk_count(backend, old, queue=args.queue, statuses=statuses)
            stop = await _ask(args, "purge", "purge", count, statuses, where)
            if stop is not None:
                return stop
        if args.queue is not None:
            # One queue: its final tasks, page by page (a task retried or
            # claimed since its page was read is no longer final and is kept).
            async def purge_page(page: list[StoredTask]) -> int:
                return await _delete_finished(backend, [t.id for t in page if old(t)])

            n = await walk(backend, purge_page, queue=args.queue, statuses=statuses)
            print(f"purged {_plural(n)}{where}")
            return EXIT_OK
        n = await purge_finished(backend, dict.fromkeys(statuses, cutoff))
    print(f"purged {_plural(n)}")
    return EXIT_OK


async def _delete_finished(backend: Backend, ids: list[str]) -> int:
    """Delete those of ``ids`` that are still final (read again just before)."""
    if not ids:
        return 0
    recs = await backend.driver.get_many(ids)
    final = [r.id for r in recs if r.status.is_final]
    return await backend.driver.delete(final) if final else 0
