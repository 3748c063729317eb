"""The backend a command names: its row in the backend table, its options, opening it.

Everything about a kind of storage comes from the table (``trioqueue.drivers``):
the command line names no backend and no URL scheme.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .._backend import Backend
from .._codec import CborCodec, Codec, JsonCodec
from .._open import open_backend
from ..drivers import BackendSpec, backend_spec, registered_schemes
from ._errors import EXIT_BACKEND, EXIT_USAGE, CliError, leaf, one_line
from ._output import redact

__all__ = ["backend_options", "make_codec", "open_backend_of", "spec_of"]

#: Command-line options passed to a backend: ``BackendSpec.options`` name -> option.
_OPTIONS = {"schema": "--schema"}


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
            EXIT_BACKEND, f"cannot use backend {redact(url)!r}: {one_line(exc)}"
        ) from exc


def backend_options(args: argparse.Namespace, spec: BackendSpec) -> dict[str, Any]:
    """Return the backend options given on the command line (``--schema``).

    Raises:
      CliError: (usage) for an option that ``spec``'s backend does not take.
    """
    options: dict[str, Any] = {}
    for name, flag in _OPTIONS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in spec.options:
            having = [s.name for s in _specs() if name in s.options]
            if not having:
                raise CliError(EXIT_USAGE, f"{flag} applies to none of the backends here")
            raise CliError(EXIT_USAGE, f"{flag} applies to {_either(having)} backends only")
        options[name] = value
    return options


@asynccontextmanager
async def open_backend_of(
    args: argparse.Namespace, *, queue: str | None = None
) -> AsyncIterator[Backend]:
    """Open the backend of ``--backend`` (with its options and ``--codec``) for the block.

    Raises:
      CliError: (backend, or usage for a misplaced option) if it cannot be opened.
    """
    url: str = args.backend
    options = backend_options(args, spec_of(url))
    opened = False
    try:
        async with open_backend(
            url, queue=queue or "default", codec=make_codec(args.codec), **options
        ) as backend:
            opened = True
            yield backend
    except Exception as exc:
        if opened:
            raise
        cause = leaf(exc)
        if isinstance(cause, ImportError) and cause.name not in (None, "trioqueue"):
            msg = f"cannot use backend {redact(url)!r}: {one_line(cause)}"
        else:
            msg = f"cannot open backend {redact(url)!r}: {one_line(cause)}"
        # A value refused before storage was reached (an option, a name) is a usage error.
        code = EXIT_USAGE if isinstance(cause, ValueError) else EXIT_BACKEND
        raise CliError(code, msg) from exc
