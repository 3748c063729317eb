"""The backend a command names: its row in the backend table, its options, opening it.

Everything about a kind of storage comes from the table (``trioqueue.drivers``):
the command line names no backend and no URL scheme.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

import trio

from .._backend import Backend
from .._codec import CborCodec, Codec, JsonCodec
from .._open import open_backend
from ..drivers import BackendSpec, backend_spec, registered_schemes
from ._errors import EXIT_BACKEND, EXIT_NO_STORE, EXIT_USAGE, CliError, leaf, one_line
from ._output import redact

__all__ = [
    "DEFAULT_WAIT",
    "backend_options",
    "install_hint",
    "make_codec",
    "missing_store",
    "open_backend_of",
    "spec_of",
    "start_wait",
    "wait_for_backend",
]

log = logging.getLogger("trioqueue.cli")

T = TypeVar("T")

#: Seconds ``--burst`` and the admin commands wait for an unreachable backend.
DEFAULT_WAIT = 30.0

#: Command-line options passed to a backend: ``BackendSpec.options`` name -> option.
_OPTIONS = {
    "schema": "--schema",
    "listen": "--no-listen",
    "pool_size": "--pool-size",
    "migrate": "--no-migrate",
}

#: The extra to install for a missing module, for the message that says so.
_EXTRAS = {"psycopg": "postgres", "prometheus_client": "metrics", "opentelemetry": "otel"}


def install_hint(exc: BaseException) -> str:
    """Return `` (pip install 'trioqueue[x]')`` for an ImportError of an extra's module, or ""."""
    name = getattr(exc, "name", None) or ""
    text = str(exc)
    for module, extra in _EXTRAS.items():
        if name.split(".")[0] == module or f"'{module}" in text or f"trioqueue[{extra}]" in text:
            return f" (pip install 'trioqueue[{extra}]')"
    return ""


def make_codec(name: str) -> Codec:
    """Return the codec named by ``--codec``."""
    return CborCodec() if name == "cbor" else JsonCodec()


def _specs() -> list[BackendSpec]:
    """Every row of the table that loads here, once each (a row may have several schemes)."""
    rows: list[BackendSpec] = []
    for scheme in registered_schemes():
        try:
            spec = backend_spec(f"{scheme}:")
        except ImportError:  # its driver is not installed here
            continue
        if spec not in rows:
            rows.append(spec)
    return rows


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def spec_of(url: str) -> BackendSpec:
    """Return the table's row for ``url``.

    Raises:
      CliError: (backend) for a scheme nobody registered, or a driver that is
        not installed.
    """
    try:
        return backend_spec(url)
    except ValueError:
        examples = _either([spec.example for spec in _specs()])
        raise CliError(
            EXIT_BACKEND, f"unknown backend URL {redact(url)!r}: use {examples}"
        ) from None
    except ImportError as exc:
        raise CliError(
            EXIT_BACKEND, f"cannot use backend {redact(url)!r}: {one_line(exc)}{install_hint(exc)}"
        ) from exc


def backend_options(args: argparse.Namespace, spec: BackendSpec) -> dict[str, Any]:
    """Return the backend options given on the command line (``--schema``).

    Raises:
      CliError: (usage) for an option that ``spec``'s backend does not take.
    """
    options: dict[str, Any] = {}
    for name, flag in _OPTIONS.items():
        value = getattr(args, name, None)
        if value is None or (name == "migrate" and value is True):
            continue  # not given (migrating is every backend's default)
        if name not in spec.options:
            having = [s.name for s in _specs() if name in s.options]
            if not having:
                raise CliError(EXIT_USAGE, f"{flag} applies to none of the backends here")
            raise CliError(EXIT_USAGE, f"{flag} applies to {_either(having)} backends only")
        options[name] = value
    return options


def start_wait(args: argparse.Namespace) -> float:
    """Return how long a command waits for its backend: ``--wait``, else by command.

    A ``worker`` without ``--burst`` waits for as long as it takes; ``--burst``
    and the other commands wait ``DEFAULT_WAIT`` seconds.
    """
    wait: float | None = getattr(args, "wait", None)
    if wait is not None:
        return wait
    if args.command == "worker" and not args.burst:
        return math.inf
    return DEFAULT_WAIT


def retry_delay(tries: int) -> float:
    """Return the pause before try ``tries + 1``: 0.1 s doubling up to 5 s, with jitter."""
    return min(5.0, 0.1 * 2.0 ** min(tries - 1, 10)) * (0.5 + random.random() / 2)


def _is_transient(exc: BaseException, transient: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc``, or an error it was raised from, is one of ``transient``."""
    seen: BaseException | None = leaf(exc)
    while seen is not None:
        if isinstance(seen, transient):
            return True
        seen = seen.__cause__
    return False


async def wait_for_backend(
    url: str, spec: BackendSpec, wait: float, attempt: Callable[[], Awaitable[T]]
) -> T:
    """Return ``await attempt()``, retrying the backend's transient errors for ``wait`` seconds.

    Each failed try logs a warning with the error and the pause before the
    next (see ``retry_delay``).

    Raises:
      Whatever ``attempt`` raised last: at once for an error that is not
      transient, else once ``wait`` seconds went by.
    """
    deadline = trio.current_time() + wait
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as exc:
            left = deadline - trio.current_time()
            if left <= 0 or not _is_transient(exc, spec.transient):
                raise
            tries += 1
            delay = min(left, retry_delay(tries))
            log.warning(
                "backend %s not reachable (%s); try %d in %.2fs",
                redact(url),
                one_line(leaf(exc)),
                tries + 1,
                delay,
            )
            await trio.sleep(delay)


def missing_store(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) says the store does not exist yet.

    A missing database file (``FileNotFoundError``) or a missing table
    (SQLSTATE ``42P01``, undefined table) mean no store; nothing else does.
    """
    seen: BaseException | None = leaf(exc)
    while seen is not None:
        if isinstance(seen, FileNotFoundError) or getattr(seen, "sqlstate", None) == "42P01":
            return True
        seen = seen.__cause__
    return False


@asynccontextmanager
async def open_backend_of(
    args: argparse.Namespace, *, queue: str | None = None, read_only: bool = False
) -> AsyncIterator[Backend]:
    """Open the backend of ``--backend`` (with its options and ``--codec``) for the block.

    With ``read_only``, a backend that can migrate is opened without
    migrating: a store that does not exist is not created but reported
    (exit status 7, ``EXIT_NO_STORE``).

    A backend that cannot be reached (a transient error of its driver: a
    server down or recovering, a locked file) is tried again with backoff
    for ``start_wait(args)`` seconds.

    Raises:
      CliError: (backend, or usage for a misplaced option) if it cannot be opened.
    """
    url: str = args.backend
    spec = spec_of(url)
    options = backend_options(args, spec)
    if read_only and "migrate" in spec.options:
        options["migrate"] = False
    codec = make_codec(getattr(args, "codec", "json"))
    opened = False
    try:
        async with AsyncExitStack() as stack:

            def attempt() -> Awaitable[Backend]:
                cm = open_backend(url, queue=queue or "default", codec=codec, **options)
                return stack.enter_async_context(cm)

            backend = await wait_for_backend(url, spec, start_wait(args), attempt)
            opened = True
            yield backend
    except Exception as exc:
        if opened:
            raise
        cause = leaf(exc)
        if read_only and missing_store(exc):
            raise CliError(
                EXIT_NO_STORE,
                f"no trioqueue store at {redact(url)!r} yet: {one_line(cause)} "
                f"(push a task or run `trioqueue migrate` to create it)",
            ) from exc
        if isinstance(cause, ImportError) and cause.name not in (None, "trioqueue"):
            msg = f"cannot use backend {redact(url)!r}: {one_line(cause)}{install_hint(cause)}"
        else:
            msg = f"cannot open backend {redact(url)!r}: {one_line(cause)}"
        # A value refused before storage was reached (an option, a name) is a usage error.
        code = EXIT_USAGE if isinstance(cause, ValueError) else EXIT_BACKEND
        raise CliError(code, msg) from exc
