"""The storage side of workflows: transition records, the driver operation, payload frames.

A workflow run is a record in the tasks table (the *run record*: never
claimable, RUNNING until the transition that ends it, never made PENDING by
a retry, which resumes the run instead) plus one task per node.
A node's DONE and the creation of what follows it are one storage
transaction, ``FlowDriver.advance``, under the node's lease. The payload of a
node task is a *frame*: the node's name, then either its args as the codec
encoded them or the stored results of the nodes it joins, so that a driver
composes a join's input from bytes, without knowing the codec.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._driver import Driver, Outcome, StoredTask

__all__ = [
    "META_FLOW",
    "META_ITEM",
    "META_NODE",
    "META_RUN",
    "RUN_CANCELLED",
    "RUN_ENDED",
    "FlowDriver",
    "Join",
    "Transition",
    "gathered",
    "join_payload",
    "node_id",
    "parse_frame",
    "run_ended_error",
    "value_frame",
]

#: Meta keys of the tasks of a run: the flow's name, the run's id, the node's
#: name (absent on the run record) and a map item's ``[index, count]``.
META_FLOW = "trioqueue_flow"
META_RUN = "trioqueue_run"
META_NODE = "trioqueue_node"
META_ITEM = "trioqueue_item"

#: ``last_error`` of a run cancelled by ``cancel``, and of a task its run's end cancelled.
RUN_CANCELLED = "Cancelled: the run was cancelled"
RUN_ENDED = "Cancelled: its run ended"


def run_ended_error(node: str, status: str, error: str | None) -> str:
    """Return the ``last_error`` of a run that its node ``node`` ended (the end rule)."""
    return f"node '{node}' ended {status}: {error or 'no reason given'}"


_MAGIC = b"\x00tqflow1"
VALUE, TUPLE, LIST = b"v", b"t", b"l"
_NULL = -1


def node_id(run: str, node: str, item: int | None = None) -> str:
    """Return the task id of ``node`` (or of its map item ``item``) in run ``run``."""
    return f"{run}/{node}" if item is None else f"{run}/{node}/{item}"


def _head(node: str, kind: bytes) -> bytes:
    name = node.encode("utf-8")
    return _MAGIC + struct.pack(">H", len(name)) + name + kind


def value_frame(node: str, encoded: bytes) -> bytes:
    """Return the payload of a task of ``node`` whose args the codec encoded as ``encoded``."""
    return _head(node, VALUE) + encoded


def join_payload(node: str, as_list: bool) -> bytes:
    """Return the head of a join's payload; the driver appends ``gathered(inputs)``."""
    return _head(node, LIST if as_list else TUPLE)


def gathered(results: Sequence[bytes | None]) -> bytes:
    """Return the inputs a driver appends to a join's head: the stored results, in order.

    A count, then each result as its length and its bytes (length -1 for a
    missing result). PostgreSQL builds the same bytes with ``int4send``.
    """
    out = [struct.pack(">i", len(results))]
    for r in results:
        if r is None:
            out.append(struct.pack(">i", _NULL))
        else:
            out.append(struct.pack(">i", len(r)))
            out.append(bytes(r))
    return b"".join(out)


def parse_frame(payload: bytes) -> tuple[str, bytes, list[bytes | None] | bytes]:
    """Return ``(node, kind, body)`` of a node's payload; body is bytes or the joined results.

    Raises:
      ValueError: if ``payload`` is not a workflow node's frame.
    """
    data = bytes(payload)
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 3:
        raise ValueError("the payload is not a workflow node's (pushed by hand to a flow's queue?)")
    at = len(_MAGIC)
    (size,) = struct.unpack_from(">H", data, at)
    at += 2
    node = data[at : at + size].decode("utf-8")
    at += size
    kind = data[at : at + 1]
    at += 1
    if kind == VALUE:
        return node, kind, data[at:]
    if kind not in (TUPLE, LIST):
        raise ValueError(f"unknown workflow frame kind {kind!r}")
    (count,) = struct.unpack_from(">i", data, at)
    at += 4
    parts: list[bytes | None] = []
    for _ in range(count):
        (n,) = struct.unpack_from(">i", data, at)
        at += 4
        if n == _NULL:
            parts.append(None)
            continue
        if n < 0 or at + n > len(data):
            raise ValueError("a workflow join's inputs are truncated")
        parts.append(data[at : at + n])
        at += n
    return node, kind, parts


@dataclass(slots=True, eq=False)
class Join:
    """A fan-in node that a settled node feeds (see ``FlowDriver.advance``).

    Attributes:
      task: The join node's task; its payload is the head (``join_payload``)
        to which the driver appends ``gathered`` of the inputs' results.
      inputs: The ids of the tasks whose results are its inputs, in order;
        the fan-in counter starts at ``len(inputs)``.
    """

    task: StoredTask
    inputs: list[str]


@dataclass(slots=True)
class Transition(Outcome):
    """A workflow node's DONE outcome with what follows it, written by ``advance``.

    Attributes:
      run: The id of the run record.
      spawn: Tasks to create (ids stored already are skipped).
      joins: Fan-in nodes this node feeds.
      finish: This node's result is the run's: the run record becomes DONE with it.
    """

    run: str = ""
    spawn: list[StoredTask] = field(default_factory=list)
    joins: list[Join] = field(default_factory=list)
    finish: bool = False


class FlowDriver(Driver, Protocol):
    """A driver that runs workflows: ``Driver`` plus ``advance``, two rules, and the resume.

    ``advance`` settles workflow nodes DONE and creates their successors in
    the same transaction. The rules hold for every operation of the driver
    (``settle``, ``release``, ``rescue``, ``cancel``, ``advance``):

    - *End rule*: a node task (meta ``trioqueue_node``) that becomes KILLED
      or CANCELLED ends its run in the same transaction: the run record, if
      RUNNING, becomes KILLED or CANCELLED (``last_error`` names the node and
      its error, ``finished_at`` now); the run's other tasks that are not
      final are cancelled (PENDING and FAILED at once, QUEUED and RUNNING
      flagged as ``cancel`` flags them) and its fan-in counters dropped.
    - *Run cancel*: ``cancel`` of a RUNNING run record (meta ``trioqueue_run``
      equal to its id, no ``trioqueue_node``) makes it CANCELLED at once and
      cancels its tasks as the end rule does.

    ``retry``, ``purge`` and ``delete`` treat a run record as a run:

    - *Resume*: a run record is never made PENDING. ``retry`` of a KILLED or
      CANCELLED run record, or of a FAILED, KILLED or CANCELLED node of such
      a run (``retry_kind`` decides), resumes the run in one transaction:
      every task of the run that is FAILED, KILLED or CANCELLED becomes
      PENDING (``run_at`` the later of its own and now, ``finished_at``
      cleared, one more attempt allowed) and the run record RUNNING again
      (``finished_at`` cleared). It changes nothing and returns False while
      a task of the run is QUEUED or RUNNING (the end flagged it: it is
      stopping), or when no task of the run would run again.
    - *Live nodes kept*: ``purge`` and ``delete`` leave the nodes of a
      RUNNING run (its joins read their results).
    """

    async def advance(self, steps: Sequence[Transition], token: str) -> list[str]:
        """Settle workflow nodes DONE and create what follows each one, atomically.

        For each step whose lease ``token`` still holds, in one transaction:
        the node is settled exactly as ``settle`` settles a DONE outcome (a
        cancellation requested makes it CANCELLED, and the end rule applies).
        Then, only if it is DONE and the run record ``step.run`` is RUNNING
        with no cancellation requested: ``spawn`` is inserted (existing ids
        skipped); each join's counter (stored, keyed by the join task's id)
        is decremented, or, when there is none (the join's first arrival, or
        the first since its run resumed: the end of a run drops its
        counters), created as the number of ``inputs`` not DONE (this node
        is DONE; a missing input is not); the arrival that leaves it at zero
        inserts the join task, its payload the head plus ``gathered`` of the
        stored results of ``inputs`` in order, and drops the counter; with
        ``finish`` the run record becomes DONE with the node's result and
        ``finished_at`` now.

        Returns:
          The ids settled; a step whose lease was lost is dropped whole.
        """
        ...
