"""The commands that push, inspect and manage tasks, one coroutine each.

Each takes the parsed arguments and returns the exit status; a failure the
user can act on is a ``CliError``. The worker command is in ``_worker_command``.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec
import trio

from .._backend import Backend
from .._codec import json_error
from .._errors import CodecError, DuplicateTask, TaskCancelled, TaskFailed
from .._flow._define import Flow
from .._flow._plan import compile_plan
from .._flow._spec import FlowError
from .._flow._types import UNKNOWN
from .._task import Status, Task
from ._backends import (
    backend_options,
    make_codec,
    open_backend_of,
    spec_of,
    start_wait,
    wait_for_backend,
)
from ._errors import (
    EXIT_BACKEND,
    EXIT_DUPLICATE,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
    leaf,
    one_line,
)
from ._handlers import args_type, handler_queue, load_handler
from ._output import dumps, escape, iso, jsonable, redact, short, table, task_dict, type_name

__all__ = [
    "cmd_migrate",
    "cmd_push",
    "cmd_show",
    "cmd_status",
    "cmd_tasks",
    "cmd_wait",
    "find_task",
]


def _status_text(args: argparse.Namespace, counts: dict[str, dict[Status, int]]) -> str:
    if args.json:
        return dumps({q: {s.value: c.get(s, 0) for s in Status} for q, c in sorted(counts.items())})
    header = ["queue", *(s.value for s in Status), "total"]
    rows = []
    for q, by in sorted(counts.items()):
        cells = [str(by.get(s, 0)) for s in Status]
        rows.append([q, *cells, str(sum(by.values()))])
    if not rows:
        return "no tasks" + (f" in queue {args.queue!r}" if args.queue else "")
    return table(header, rows)


async def cmd_status(args: argparse.Namespace) -> int:
    """Print task counts per queue and status (with ``--watch``, again every few seconds)."""
    async with open_backend_of(args, read_only=True) as backend:
        if args.watch is None:
            print(_status_text(args, await backend.counts(queue=args.queue)))
            return EXIT_OK
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
        try:
            while True:
                text = _status_text(args, await backend.counts(queue=args.queue))
                now = iso(datetime.now(UTC))
                print(f"{clear}{now}  every {args.watch:g}s, ctrl-c to stop\n{text}", flush=True)
                await trio.sleep(args.watch)
        except KeyboardInterrupt:
            return EXIT_OK


async def cmd_tasks(args: argparse.Namespace) -> int:
    """Print a page of tasks, newest first."""
    async with open_backend_of(args, read_only=True) as backend:
        tasks = await backend.list_tasks(
            queue=args.queue, status=args.status, limit=args.limit, offset=args.offset
        )
    if args.json:
        print(dumps([task_dict(t) for t in tasks]))
        return EXIT_OK
    if not tasks:
        print("no tasks")
        return EXIT_OK
    rows = [
        [
            str(t.id),
            t.queue or "",
            t.status.value,
            f"{t.attempts}/{t.max_attempts}",
            iso(t.run_at) or "",
            short(t.last_error, 50),
        ]
        for t in tasks
    ]
    print(table(["id", "queue", "status", "attempts", "run_at", "last_error"], rows))
    return EXIT_OK


async def find_task(backend: Backend, task_id: str) -> Task[Any]:
    """Return the task with this id: as typed, else upper- or lower-cased.

    Generated ids are upper-case; an id typed or pasted in lower case finds
    its task (an id the caller set keeps its case, and is tried first).

    Raises:
      CliError: (not found) if no task has the id.
    """
    for candidate in dict.fromkeys((task_id, task_id.upper(), task_id.lower())):
        task = await backend.get_task(candidate)
        if task is not None:
            return task
    raise CliError(EXIT_NOT_FOUND, f"no task with id {task_id!r}")


async def cmd_show(args: argparse.Namespace) -> int:
    """Print one task."""
    async with open_backend_of(args, read_only=True) as backend:
        task = await find_task(backend, args.id)
    d = task_dict(task)
    if args.json:
        print(dumps(d))
        return EXIT_OK
    width = max(len(k) for k in d)
    for key, value in d.items():
        if key in ("args", "result", "meta", "progress"):
            value = dumps(value)
        elif key == "duration" and value is not None:
            value = f"{value:.3f}s"
        elif key == "traceback" and value:  # its lines under the name, indented
            value = "\n" + "\n".join("  " + escape(line) for line in value.split("\n"))
            print(f"{key}{value}")
            continue
        print(f"{key.ljust(width)}  {'' if value is None else escape(str(value))}")
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace) -> int:
    """Wait until a task is final; print its result, or fail if it was killed or cancelled."""
    timeout: float | None = args.timeout
    async with open_backend_of(args, read_only=True) as backend:
        args.id = str((await find_task(backend, args.id)).id)
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                result = await backend.wait_result(args.id)
        except trio.TooSlowError:
            task = await backend.get_task(args.id)
            now = "gone" if task is None else f"still {task.status.value}"
            raise CliError(
                EXIT_TIMEOUT, f"task {args.id} is {now} after {timeout:g}s (--timeout)"
            ) from None
        except LookupError:
            raise CliError(EXIT_NOT_FOUND, f"no task with id {args.id!r}") from None
        except TaskFailed as exc:
            why = short(exc.task.last_error, 200) or "no reason recorded"
            raise CliError(EXIT_FAILED, f"task {args.id} ended killed: {why}") from None
        except TaskCancelled:
            raise CliError(EXIT_FAILED, f"task {args.id} was cancelled") from None
    print(dumps(jsonable(result)))
    return EXIT_OK


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the storage schema and print its version."""
    url: str = args.backend
    spec = spec_of(url)
    options = backend_options(args, spec)
    if args.sql:
        if spec.migration_sql is None:
            raise CliError(EXIT_USAGE, f"the {spec.name} backend has no SQL migrations to print")
        try:
            print(spec.migration_sql(**options), end="")
        except ValueError as exc:
            raise CliError(EXIT_USAGE, f"cannot print the migrations: {exc}") from exc
        return EXIT_OK
    if spec.migrate is None:
        print(f"{spec.name} backend: nothing to migrate")
        return EXIT_OK
    try:
        migrate = spec.migrate
        version = await wait_for_backend(
            url, spec, start_wait(args), lambda: migrate(url, **options)
        )
    except Exception as exc:
        code = EXIT_USAGE if isinstance(leaf(exc), ValueError) else EXIT_BACKEND
        raise CliError(code, f"cannot migrate {redact(url)!r}: {one_line(leaf(exc))}") from exc
    print(f"{spec.name} schema up to date at version {version}")
    return EXIT_OK


def _flow_args_types(flow: Flow, spec: str) -> list[Any]:
    """Return the types a run's args must decode into: each root's (a list, for a map)."""
    try:
        plan = compile_plan(flow)
    except FlowError as exc:
        raise CliError(EXIT_USAGE, f"{spec} is not a valid workflow: {exc}") from exc
    out: list[Any] = []
    for name in plan.roots:
        step = plan.steps[name]
        tp = Any if step.takes is UNKNOWN else step.takes
        out.append(list[tp] if step.spec.map else tp)  # type: ignore[valid-type]
    return out


async def cmd_push(args: argparse.Namespace) -> int:
    """Validate args against the handler's type and push one task.

    A workflow (``Workflow`` or ``DagFlow``) starts a run instead: its args
    are checked against each root's type and the run id is printed.
    """
    handler = load_handler(args.handler)
    is_flow = isinstance(handler, Flow)
    if is_flow:
        if args.if_exists == "replace_finished":
            raise CliError(
                EXIT_USAGE,
                f"{args.handler} is a workflow: a run cannot replace a finished one (its "
                f"nodes keep their ids); push it with a new --id, or --if-exists skip/raise",
            )
        arg_types = _flow_args_types(handler, args.handler)
    else:
        arg_types = [args_type(handler, args.handler)]
    data = args.args.encode("utf-8", "surrogatepass")
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise CliError(EXIT_USAGE, f"ARGS_JSON is not valid JSON: {json_error(data, exc)}") from exc
    codec = make_codec(args.codec)
    for arg_type in arg_types:
        try:
            codec.decoder(arg_type)(codec.encode(value))
        except CodecError as exc:
            raise CliError(
                EXIT_USAGE, f"args do not fit {args.handler} ({type_name(arg_type)}): {exc}"
            ) from exc
    queue = args.queue or handler_queue(handler, args.handler)
    options: dict[str, Any] = {
        "delay": args.delay,
        "priority": args.priority,
        "max_attempts": args.max_attempts,
        "id": args.id,
        "if_exists": args.if_exists,
    }
    async with open_backend_of(args, queue=queue) as backend:
        try:
            if is_flow:
                task_id = await handler.push(backend, value, **options)
            else:
                task_id = await backend.push(value, **options)
        except DuplicateTask as exc:
            raise CliError(EXIT_DUPLICATE, one_line(exc)) from exc
        except (TypeError, ValueError, CodecError) as exc:
            raise CliError(EXIT_USAGE, f"cannot push: {exc}") from exc
    print(task_id)
    return EXIT_OK
