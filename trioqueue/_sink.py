"""``TaskSink``: the five ways to push tasks, shared by every backend."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from ._codec import Codec
from ._driver import StoredTask
from ._durations import seconds
from ._errors import CodecError
from ._task import MAX_TIMESTAMP, Status, Task, TaskId, to_timestamp

__all__ = ["CODEC_KEY", "IfExists", "TaskSink", "check_queue_name"]

#: The meta header naming the codec a payload was encoded with, when it is not
#: JSON (absent: JSON). A worker whose codec differs leaves the task for one
#: whose codec fits instead of taking the payload for undecodable.
CODEC_KEY = "trioqueue.codec"

Args = TypeVar("Args")

#: How many tasks of a bulk or stream push travel as one batch.
CHUNK = 256


def check_queue_name(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise.

    Raises:
      TypeError: if it is not a ``str``.
      ValueError: if it is empty, longer than 255 characters, or holds NUL.
    """
    if not isinstance(queue, str):
        raise TypeError(f"queue must be a str, got {type(queue).__name__}")
    if not queue or len(queue) > 255 or "\x00" in queue or not _utf8(queue):
        raise ValueError(
            f"queue must be 1 to 255 characters of UTF-8 text without NUL, got {queue[:40]!r}"
        )
    return queue


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_int(name: str, value: object, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


# What every backend stores: max_attempts in a 32-bit column, priority in 64 bits.
_MAX_ATTEMPTS = 2**31 - 1
_PRIORITY = 2**63 - 1


#: The largest ``meta`` accepted at push, in bytes of its JSON form (64 KiB):
#: meta travels with every claim of its task, so it is for headers, not data.
MAX_META_BYTES = 64 * 1024


#: What a push of a taken id does (see ``TaskSink.push``).
IfExists = Literal["skip", "raise", "replace_finished"]
_IF_EXISTS = ("skip", "raise", "replace_finished")


def _if_exists(value: object) -> IfExists:
    if value not in _IF_EXISTS:
        raise ValueError(
            f"if_exists must be one of {', '.join(map(repr, _IF_EXISTS))}, not {value!r}"
        )
    return value  # type: ignore[return-value]


def _check_meta(meta: object) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise TypeError("meta must be a dict with str keys")
    try:
        encoded = msgspec.json.encode(meta)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"meta is not JSON-able: {exc}") from exc
    except RecursionError as exc:  # a dict that holds itself, or one nested thousands deep
        raise CodecError("meta is cyclic or nested too deeply to encode") from exc
    if len(encoded) > MAX_META_BYTES:
        raise CodecError(
            f"meta is {len(encoded)} bytes as JSON, over the limit of {MAX_META_BYTES} bytes "
            f"(64 KiB): put large data in the task's args"
        )
    if b"\\u0000" in encoded or "\x00" in "".join(meta):
        raise CodecError("meta must not contain NUL characters")
    return dict(meta)


class TaskSink(Generic[Args]):
    """Something tasks can be pushed into; every backend is one.

    Each push encodes with the backend's codec, then sends the encoded tasks
    through a bounded memory channel to the storage bridge and waits until
    storage acknowledged them. A producer faster than storage waits on the
    full channel: memory stays bounded. Once a push returns, the tasks are
    stored durably (for durable backends) and will run at least once.

    Pushing a task whose ``id`` already exists stores nothing new.
    """

    #: Tasks of a ``push_bulk`` per insert (one transaction each); a backend
    #: whose large inserts are cheap raises it.
    _bulk_chunk: ClassVar[int] = CHUNK

    queue: str
    codec: Codec

    # -- what a backend provides --

    def _now(self) -> float:
        raise NotImplementedError

    async def _store(self, batch: list[StoredTask], if_exists: IfExists = "skip") -> None:
        """Send one batch to storage and wait for its acknowledgement."""
        raise NotImplementedError

    async def _store_window(
        self, batches: AsyncIterable[list[StoredTask]], *, count: bool = False
    ) -> int:
        """Send many batches, keeping a bounded number in flight; return how many were stored.

        With ``count``, batches are inserted one by one (not merged with
        others) so that the tasks skipped as taken ids are not counted.
        """
        raise NotImplementedError

    # -- encoding --

    def _record(
        self,
        args: Any,
        *,
        now: float,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
        queue: str | None = None,
    ) -> StoredTask:
        if delay is not None and run_at is not None:
            raise ValueError("give delay or run_at, not both")
        if delay is not None:
            ts = now + seconds("delay", delay)
            if ts > MAX_TIMESTAMP:
                raise ValueError(f"delay of {delay:g}s runs past the year 9999")
        elif run_at is not None:
            if not isinstance(run_at, datetime):
                raise TypeError(f"run_at must be a datetime, got {type(run_at).__name__}")
            ts = to_timestamp(run_at)
        else:
            ts = now
        return StoredTask(
            id=TaskId.new() if id is None else TaskId(id),
            queue=self.queue if queue is None else check_queue_name(queue),
            payload=self.codec.encode(args),
            status=Status.PENDING,
            attempts=0,
            max_attempts=_check_int("max_attempts", max_attempts, 1, _MAX_ATTEMPTS),
            run_at=ts,
            priority=_check_int("priority", priority, -_PRIORITY - 1, _PRIORITY),
            meta=self._with_codec(_check_meta(meta)),
            created_at=now,
        )

    def _with_codec(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Return ``meta`` naming the codec the payload was encoded with, unless JSON."""
        name = getattr(self.codec, "name", "json")
        if name != "json":
            meta[CODEC_KEY] = name
        return meta

    def _plain_record(self, args: Any, now: float) -> StoredTask:
        """``_record`` with every option at its default (the bulk fast path)."""
        return StoredTask(
            TaskId.new(), self.queue, self.codec.encode(args), Status.PENDING, 0, 25, now, 0,
            self._with_codec({}), None, None, now,
        )  # fmt: skip

    def _task_record(self, task: Task[Any], now: float) -> StoredTask:
        if not isinstance(task, Task):
            raise TypeError(f"expected a Task, got {type(task).__name__}")
        return self._record(
            task.args,
            now=now,
            run_at=task.run_at,
            priority=task.priority,
            max_attempts=task.max_attempts,
            id=task.id,
            meta=task.meta,
            queue=task.queue,
        )

    # -- the public pushes --

    async def push(
        self,
        args: Args,
        *,
        delay: float | None = None,
        run_at: datetime | None = None,
        priority: int = 0,
        max_attempts: int = 25,
        id: str | None = None,
        meta: dict[str, Any] | None = None,
        if_exists: IfExists = "skip",
    ) -> TaskId:
        """Encode ``args`` and store it as a new task.

        Args:
          args: The handler's input; must be encodable by the backend's codec.
          delay: Seconds from now before it may run.
          run_at: An aware datetime before which it may not run.
          priority: Higher runs first (default 0).
          max_attempts: Attempts allowed in all (default 25).
          id: A caller-chosen id (unique across the queues of a store).
          meta: JSON-able headers.
          if_exists: What a push of an id that is taken does: ``"skip"`` (the
            default) stores nothing new; ``"raise"`` raises ``DuplicateTask``;
            ``"replace_finished"`` replaces a DONE, KILLED or CANCELLED task
            and skips one that is not finished. An id held by a task of
            another queue raises ``DuplicateTask`` unless it is replaced.

        Returns:
          The task's id.

        Raises:
          CodecError: if ``args`` cannot be encoded or is over the size limit.
          DuplicateTask: the id is taken (see ``if_exists``).
          PushError: if storage refused or failed.
          TypeError, ValueError: for arguments of the wrong type or range.
        """
        rec = self._record(
            args,
            now=self._now(),
            delay=delay,
            run_at=run_at,
            priority=priority,
            max_attempts=max_attempts,
            id=id,
            meta=meta,
        )
        await self._store([rec], _if_exists(if_exists))
        return rec.id  # type: ignore[return-value]

    async def push_task(self, task: Task[Args], *, if_exists: IfExists = "skip") -> TaskId:
        """Store a fully built ``Task`` (its id, queue, priority, run_at, meta...).

        Args:
          task: The task.
          if_exists: As for ``push``.

        Returns:
          The task's id. Raises as ``push`` does.
        """
        rec = self._task_record(task, self._now())
        await self._store([rec], _if_exists(if_exists))
        return rec.id  # type: ignore[return-value]

    async def push_bulk(self, items: Iterable[Args]) -> list[TaskId]:
        """Encode every item of ``items`` and store them in batches.

        All items are encoded before anything is stored, so an item that
        cannot be encoded stores nothing.

        Returns:
          The ids, in order. Raises as ``push`` does.
        """
        if isinstance(items, str | bytes | dict):
            raise TypeError("push_bulk takes an iterable of task args, not a single value")
        now = self._now()
        records = [self._plain_record(a, now) for a in items]
        step = self._bulk_chunk
        for start in range(0, len(records), step):
            await self._store(records[start : start + step])
        return [r.id for r in records]  # type: ignore[misc]

    async def push_stream(self, items: AsyncIterable[Args]) -> int:
        """Drain an async iterable of task args into storage, lazily.

        Items are encoded and stored batch by batch; a bounded number is
        held in memory at any moment, and a slow storage slows the iteration.

        Returns:
          How many items were pushed. Raises as ``push`` does; tasks of
          batches acknowledged before the error stay stored.
        """
        if not hasattr(items, "__aiter__"):
            raise TypeError(f"push_stream takes an async iterable, got {type(items).__name__}")
        counter = [0]

        async def batches() -> AsyncIterable[list[StoredTask]]:
            batch: list[StoredTask] = []
            async for a in items:
                batch.append(self._plain_record(a, self._now()))
                if len(batch) >= CHUNK:
                    counter[0] += len(batch)
                    yield batch
                    batch = []
            if batch:
                counter[0] += len(batch)
                yield batch

        await self._store_window(batches())
        return counter[0]

    async def push_all(self, tasks: AsyncIterable[Task[Args]] | Iterable[Task[Args]]) -> int:
        """Drain an (async) iterable of pre-built ``Task`` objects into storage.

        Returns:
          How many tasks were stored: a task whose id was taken is skipped
          and not counted. Raises as ``push_stream`` does.
        """

        async def batches() -> AsyncIterable[list[StoredTask]]:
            batch: list[StoredTask] = []
            if hasattr(tasks, "__aiter__"):
                async for t in tasks:
                    batch.append(self._task_record(t, self._now()))
                    if len(batch) >= CHUNK:
                        yield batch
                        batch = []
            else:
                for t in tasks:
                    batch.append(self._task_record(t, self._now()))
                    if len(batch) >= CHUNK:
                        yield batch
                        batch = []
            if batch:
                yield batch

        return await self._store_window(batches(), count=True)
