"""``make_state_machine``: a Hypothesis state machine holding a driver against ``Model``.

Random sequences of pushes (id collisions included), claims by several lease
holders, starts, extensions, settles (snoozes included), releases, clock
moves, rescues, cancels (at once, or by flag for a leased task), retries,
purges, pauses and resumes run on the real driver and on ``Model``; after
every step the two must agree: no task lost or invented, none in two
statuses, each lease with the holder the model expects, attempts and snoozes
moving only as the contract allows, cancellation flags where the model has
them, counts by status and the paused state equal.

The driver is async and the machine is not: each example runs the backend in
its own Trio thread (``_TrioThread``) and calls into it with
``trio.from_thread.run``.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from .._backend import Backend
from .._driver import Outcome, StoredTask
from .._task import Status
from ._context import BackendFactory, ManualClock
from ._model import Model

__all__ = ["make_state_machine"]

log = logging.getLogger("trioqueue.testing")

T = TypeVar("T")

_READY = (Status.PENDING, Status.FAILED)
_EPS = 1e-3


class _TrioThread:
    """A backend open in a Trio run of its own thread, called with ``from_thread``."""

    def __init__(self, open_backend: BackendFactory, **options: Any) -> None:
        self._open = open_backend
        self._options = options
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.backend: Backend | None = None
        self._thread = threading.Thread(target=self._main, name="trioqueue-model", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        try:
            trio.run(self._amain)
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()

    async def _amain(self) -> None:
        self._stop = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with self._open(**self._options) as backend:
            self.backend = backend
            self._ready.set()
            await self._stop.wait()

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        if self._error is not None:
            raise self._error


def make_state_machine(
    open_backend: BackendFactory, *, consumers: int = 3, ids: int = 6
) -> type[Any]:
    """Return a Hypothesis ``RuleBasedStateMachine`` class testing a backend against ``Model``.

    Each example opens a backend with ``open_backend(queue=q, clock=c)``
    (``q`` is a fresh queue name, ``c`` a clock moved by the machine) and
    uses ids unique to the example, so a backend shared between examples
    works too. Run it with ``hypothesis.stateful.run_state_machine_as_test``
    or expose its ``TestCase`` attribute to unittest/pytest.

    Args:
      open_backend: The factory ``check_backend`` takes.
      consumers: How many lease holders (tokens) compete.
      ids: The size of the pool task ids are drawn from (collisions included).

    Returns:
      The state machine class.

    Raises:
      ImportError: if ``hypothesis`` is not installed.
    """
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

    tokens = [f"c{i}" for i in range(consumers)]
    slot = st.integers(0, ids - 1)
    holder = st.sampled_from(tokens)
    lease = st.sampled_from([1.0, 2.0, 5.0])

    class BackendStateMachine(RuleBasedStateMachine):
        """Random operations on a real driver and on ``Model``; they must agree."""

        def __init__(self) -> None:
            super().__init__()
            tag = uuid.uuid4().hex[:10]
            self.queue = f"model-{tag}"
            self.ids = [f"{tag}-{i:02d}" for i in range(ids)]
            self.clock = ManualClock()
            self.model = Model()
            self.seen: dict[str, int] = {}
            self.may_drop: set[str] = set()
            self.trio = _TrioThread(open_backend, queue=self.queue, clock=self.clock)
            assert self.trio.backend is not None
            self.backend = self.trio.backend
            self.driver = self.backend.driver

        def teardown(self) -> None:
            self.trio.close()

        def any_leased(self) -> bool:
            return any(r.token is not None for r in self.model.rows.values())

        @property
        def now(self) -> float:
            return self.clock.now

        # -- rules --

        @rule(
            i=slot,
            priority=st.integers(-2, 2),
            delay=st.sampled_from([0.0, 0.0, 0.5, 1.0, 5.0]),
            max_attempts=st.integers(1, 3),
            via_push=st.booleans(),
        )
        def push(
            self, i: int, priority: int, delay: float, max_attempts: int, via_push: bool
        ) -> None:
            id = self.ids[i]
            payload = self.backend.codec.encode({"i": i, "at": self.now})
            want = self.model.insert(
                id, payload, priority=priority, run_at=self.now + delay, max_attempts=max_attempts
            )
            if via_push:
                got = self.trio.run(
                    lambda: self.backend.push(
                        {"i": i, "at": self.now},
                        id=id,
                        priority=priority,
                        delay=delay,
                        max_attempts=max_attempts,
                    )
                )
                assert got == id, f"push with id={id!r} returned {got!r}"
            else:
                rec = StoredTask(
                    id=id,
                    queue=self.queue,
                    payload=payload,
                    max_attempts=max_attempts,
                    run_at=self.now + delay,
                    priority=priority,
                    created_at=self.now,
                )
                n = self.trio.run(self.driver.insert, [rec])
                assert n == want, f"insert of {id} (existing: {not want}) reported {n} stored"

        @precondition(lambda self: bool(self.model.rows))
        @rule(token=holder, limit=st.integers(1, 4), seconds=lease)
        def claim(self, token: str, limit: int, seconds: float) -> None:
            want = self.model.claim(self.now, limit, token, seconds)
            got = self.trio.run(self.driver.claim, self.queue, limit, token, seconds)
            got_ids = [r.id for r in got]
            assert got_ids == want, f"claim(limit={limit}) by {token} got {got_ids}, model {want}"
            for r in got:
                m = self.model.rows[r.id]
                assert r.attempts == m.attempts, f"claim returned {r.id} with attempts {r.attempts}"
                assert r.lease_token == token, f"claim returned {r.id} leased to {r.lease_token}"

        def _pick(self, data: Any) -> tuple[str, list[str]]:
            """Draw leased tasks (plus, sometimes, any id) and a token: mostly the holder."""
            leased = sorted(id for id, r in self.model.rows.items() if r.token is not None)
            chosen = data.draw(
                st.lists(st.sampled_from(leased), min_size=1, max_size=3, unique=True)
            )
            extra = data.draw(st.one_of(st.none(), slot))
            if extra is not None and self.ids[extra] not in chosen:
                chosen.append(self.ids[extra])
            token = self.model.rows[chosen[0]].token
            if data.draw(st.integers(0, 3)) == 0 or token is None:
                token = data.draw(holder)
            return token, chosen

        @precondition(lambda self: self.any_leased())
        @rule(data=st.data())
        def start(self, data: Any) -> None:
            token, chosen = self._pick(data)
            self.model.start(chosen, token)
            self.trio.run(self.driver.start, chosen, token)

        @precondition(lambda self: self.any_leased())
        @rule(token=holder, seconds=lease)
        def extend(self, token: str, seconds: float) -> None:
            want, want_cancel = self.model.extend(self.now, self.ids, token, seconds)
            got = self.trio.run(self.driver.extend, self.ids, token, seconds)
            assert sorted(got.held) == sorted(want), (
                f"extend by {token} kept {got.held}, model {want}"
            )
            assert sorted(got.cancel) == sorted(want_cancel), (
                f"extend by {token} reported {got.cancel} to cancel, model {want_cancel}"
            )

        @precondition(lambda self: self.any_leased())
        @rule(
            data=st.data(),
            kind=st.sampled_from(
                [Status.DONE, Status.FAILED, Status.KILLED, Status.CANCELLED, Status.PENDING]
            ),
            delay=st.sampled_from([0.0, 1.0, 3.0]),
        )
        def settle(self, data: Any, kind: Status, delay: float) -> None:
            token, chosen = self._pick(data)
            outcomes = [
                Outcome(
                    id,
                    kind,
                    result=f'"r{id}"'.encode() if kind is Status.DONE else None,
                    error=None if kind in (Status.DONE, Status.PENDING) else f"{kind.value} {id}",
                    delay=delay,
                )
                for id in chosen
            ]
            want = self.model.settle(self.now, outcomes, token)
            if kind is Status.PENDING:
                self.may_drop.update(chosen)  # a snooze gives the attempt back
            got = self.trio.run(self.driver.settle, outcomes, token)
            assert sorted(got) == sorted(want), (
                f"settle {kind.value} by {token} of {chosen} applied {got}, "
                f"model {want} (a stale token must not settle)"
            )

        @precondition(lambda self: self.any_leased())
        @rule(data=st.data())
        def release(self, data: Any) -> None:
            token, chosen = self._pick(data)
            want = self.model.release(self.now, chosen, token)
            self.may_drop.update(chosen)
            got = self.trio.run(self.driver.release, chosen, token)
            assert got == want, f"release of {chosen} by {token} returned {got}, model {want}"

        @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0]))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)

        @precondition(lambda self: self.any_leased())
        @rule(wait=st.sampled_from([0.0, 1.0, 2.0, 5.0]), all_queues=st.booleans())
        def rescue(self, wait: float, all_queues: bool) -> None:
            self.clock.advance(wait)
            want = self.model.rescue(self.now)
            got = self.trio.run(self.driver.rescue, None if all_queues else self.queue)
            if all_queues:
                assert got >= want, f"rescue(None) returned {got}, model has {want} of its own"
            else:
                assert got == want, f"rescue({self.queue!r}) returned {got}, model {want}"

        @precondition(lambda self: bool(self.model.rows))
        @rule(i=slot)
        def cancel(self, i: int) -> None:
            want = self.model.cancel(self.now, self.ids[i])
            got = self.trio.run(self.driver.cancel, self.ids[i])
            assert got == want, f"cancel({self.ids[i]}) returned {got}, model {want}"

        @precondition(lambda self: self.any_leased())
        @rule(data=st.data())
        def cancel_leased(self, data: Any) -> None:
            leased = sorted(id for id, r in self.model.rows.items() if r.token is not None)
            id = data.draw(st.sampled_from(leased))
            want = self.model.cancel(self.now, id)
            got = self.trio.run(self.driver.cancel, id)
            assert got == want, f"cancel of leased task {id} returned {got}, model {want}"

        @rule(paused=st.booleans())
        def pause(self, paused: bool) -> None:
            if paused:
                self.model.pause()
                self.trio.run(self.driver.pause, self.queue)
            else:
                self.model.resume()
                self.trio.run(self.driver.resume, self.queue)

        @precondition(lambda self: bool(self.model.rows))
        @rule(i=slot)
        def retry(self, i: int) -> None:
            want = self.model.retry(self.now, self.ids[i])
            got = self.trio.run(self.driver.retry, self.ids[i])
            assert got == want, f"retry({self.ids[i]}) returned {got}, model {want}"

        @precondition(lambda self: any(r.status.is_final for r in self.model.rows.values()))
        @rule(age=st.sampled_from([0.0, 1.0, 10.0]))
        def purge(self, age: float) -> None:
            gone = self.model.purge(self.now - age)
            for id in gone:
                self.seen.pop(id, None)
            got = self.trio.run(self.driver.purge, self.now - age)
            assert got >= len(gone), f"purge returned {got}, model deleted {len(gone)}"

        # -- the agreement checked after every step --

        async def _snapshot(self) -> tuple[Any, ...]:
            d, q = self.driver, self.queue
            rows = await d.list_tasks(queue=q, status=None, limit=10_000, offset=0)
            by_status = {
                s: await d.list_tasks(queue=q, status=s, limit=10_000, offset=0) for s in Status
            }
            counts = await d.counts(q)
            nxt = await d.next_run_at(q)
            paused = q in await d.paused()
            return rows, by_status, counts, nxt, paused

        @invariant()
        def agrees_with_model(self) -> None:
            rows, by_status, counts, nxt, paused = self.trio.run(self._snapshot)
            where = "lists" if paused else "omits"
            assert paused == self.model.paused, (
                f"paused() {where} the queue, model paused={self.model.paused}"
            )
            model = self.model.rows
            got_ids = [r.id for r in rows]
            assert len(got_ids) == len(set(got_ids)), f"list_tasks returned duplicates {got_ids}"
            lost = sorted(set(model) - set(got_ids))
            extra = sorted(set(got_ids) - set(model))
            assert not lost, f"tasks lost from storage: {lost}"
            assert not extra, f"tasks in storage the model does not know: {extra}"
            placed: dict[str, Status] = {}
            for s, recs in by_status.items():
                for r in recs:
                    assert r.id not in placed, f"task {r.id} listed as {placed[r.id]} and {s}"
                    placed[r.id] = s
            for r in rows:
                m = model[r.id]
                where = f"task {r.id} (model: {m})"
                assert r.status is m.status, f"{where} is {r.status.value}"
                assert placed.get(r.id) is m.status, f"{where} listed under {placed.get(r.id)}"
                assert r.attempts == m.attempts, f"{where} has attempts {r.attempts}"
                before = self.seen.get(r.id, 0)
                assert r.attempts >= before or r.id in self.may_drop, (
                    f"{where}: attempts went from {before} to {r.attempts} without a release"
                )
                self.seen[r.id] = r.attempts
                assert r.snoozes == m.snoozes, f"{where} has snoozes {r.snoozes}"
                if not m.status.is_final:
                    assert r.cancel_requested == m.cancel_requested, (
                        f"{where} has cancel_requested {r.cancel_requested}"
                    )
                assert r.priority == m.priority, f"{where} has priority {r.priority}"
                assert r.max_attempts == m.max_attempts, f"{where} has max {r.max_attempts}"
                assert bytes(r.payload) == m.payload, f"{where} has payload {r.payload!r}"
                assert r.lease_token == m.token, f"{where} is leased to {r.lease_token!r}"
                if m.expires is not None:
                    assert r.lease_expires_at is not None, f"{where} has no lease expiry"
                    assert abs(r.lease_expires_at - m.expires) < _EPS, (
                        f"{where} lease expires at {r.lease_expires_at}"
                    )
                if m.status in _READY:
                    assert abs(r.run_at - m.run_at) < _EPS, f"{where} has run_at {r.run_at}"
                if m.status is Status.DONE:
                    got_result = None if r.result is None else bytes(r.result)
                    assert got_result == m.result, f"{where} has result {r.result!r}"
                if m.status.is_final:
                    assert r.finished_at is not None, f"{where} has no finished_at"
            self.may_drop.clear()
            want_counts = self.model.counts()
            got_counts = {Status(s): n for s, n in counts.get(self.queue, {}).items() if n}
            assert got_counts == want_counts, f"counts {got_counts}, model {want_counts}"
            assert set(counts) <= {self.queue}, f"counts({self.queue!r}) gave queues {set(counts)}"
            want_next = self.model.next_run_at()
            if want_next is None:
                assert nxt is None, f"next_run_at is {nxt} with no waiting task"
            else:
                assert nxt is not None and abs(nxt - want_next) < _EPS, (
                    f"next_run_at is {nxt}, the earliest run_at of a waiting task is {want_next}"
                )

    BackendStateMachine.__name__ = BackendStateMachine.__qualname__ = "BackendStateMachine"
    return BackendStateMachine
