"""The backend table: one row per kind of storage, found by the scheme of a URL.

A row (``BackendSpec``) says how to open a backend from a URL, how to bring
its schema up to date, which version that is, and which driver exceptions are
transient (retried with backoff; any other driver exception fails the call).
``open_backend``, the command line and the test harnesses read this table and
never name a backend themselves. The built-in rows are loaded on first use, so
an optional dependency (psycopg) is imported only when its scheme is used.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from ._backend import Backend

__all__ = [
    "BackendSpec",
    "backend_spec",
    "redact_url",
    "register_backend",
    "registered_schemes",
    "scheme_of",
    "unregister_backend",
]

#: The entry-point group a package names its ``BackendSpec`` in, by scheme, so
#: that its backend is found without being imported first.
ENTRY_POINT_GROUP = "trioqueue.backends"

#: The built-in rows: scheme -> ``"module:attribute"`` of its ``BackendSpec``.
_BUILTIN = {
    "memory": "trioqueue.backends.memory:BACKEND",
    "sqlite": "trioqueue.backends.sqlite:BACKEND",
    "postgresql": "trioqueue.backends.postgres:BACKEND",
    "postgres": "trioqueue.backends.postgres:BACKEND",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSpec:
    """How trioqueue reaches one kind of storage; registered with ``register_backend``.

    Example::

        register_backend(BackendSpec(
            name="toy",
            schemes=("toy",),
            open=ToyBackend.open,
            example="toy:///path/to/dir",
            transient=(OSError,),
        ))

    Attributes:
      name: A short name, shown in messages (``"sqlite"``).
      schemes: The URL schemes it answers to (``("postgresql", "postgres")``).
      open: ``open(url, *, queue=, codec=, **options)``, an async context
        manager yielding a ``Backend``.
      example: A URL to show in messages (``"sqlite:///path.db"``).
      transient: The driver exceptions that a retry may cure (a lost
        connection, a locked file). They are retried with backoff; any other
        exception from the driver is a bug or bad data and fails the call.
      migrate: ``await migrate(url, **options)`` creates or upgrades the
        schema and returns its version; None when there is nothing to migrate.
      schema_version: The schema version this code writes, or None.
      options: Names of backend options the command line may pass
        (``"schema"`` for ``--schema``).
      migration_sql: ``migration_sql(**options)`` returns the statements that
        ``migrate`` runs, as a script (``trioqueue migrate --sql``), or None.
    """

    name: str
    schemes: tuple[str, ...]
    open: Callable[..., AbstractAsyncContextManager[Backend]]
    example: str
    transient: tuple[type[BaseException], ...] = ()
    migrate: Callable[..., Awaitable[int]] | None = None
    schema_version: int | None = None
    options: frozenset[str] = field(default_factory=frozenset)
    migration_sql: Callable[..., str] | None = None


_table: dict[str, BackendSpec | str] = dict(_BUILTIN)


#: ``password=…`` as a libpq ``key=value`` pair (quoted or not) or a query parameter.
_PASSWORD_PARAM = re.compile(r"(?i)(\b(?:ssl)?pass(?:word)?\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&;#]*)")
#: ``user:password@``, wherever it is: after ``//``, or in a URL whose scheme
#: or slashes are mistyped (``postgresql//u:pw@host``, ``u:pw@host``).
_USERINFO = re.compile(r"([^:/?#@\s]*):(?!//)[^\s]*@")


def redact_url(url: str) -> str:
    """Return ``url`` with every password in it replaced by ``***`` (for messages and logs).

    It hides the password of a well-formed URL (``scheme://user:pw@host``),
    of a malformed or mistyped one, ``password=`` query parameters and libpq
    ``key=value`` connection strings (``host=db password=pw``); text that
    merely looks like a password is hidden too, rather than risk printing one.
    """
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: the patterns below still apply
        password = None
    if password is not None:
        netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
        url = urlunsplit(parts._replace(netloc=netloc))
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    return _USERINFO.sub(r"\1:***@", url)


def scheme_of(url: str) -> str:
    """Return the lower-cased scheme of ``url`` (``""`` if it has none)."""
    head, sep, _ = url.partition(":")
    return head.lower() if sep else ""


def register_backend(spec: BackendSpec, *, replace: bool = False) -> None:
    """Add ``spec`` to the table under each of its schemes.

    Args:
      spec: The backend's row.
      replace: Allow replacing a scheme that is already registered.

    Raises:
      ValueError: if a scheme is taken (and ``replace`` is false) or malformed.
      TypeError: if ``spec`` is not a ``BackendSpec``.
    """
    if not isinstance(spec, BackendSpec):
        raise TypeError(f"expected a BackendSpec, got {type(spec).__name__}")
    if not spec.schemes:
        raise ValueError(f"backend {spec.name!r} names no URL scheme")
    for scheme in spec.schemes:
        if not scheme or scheme != scheme.lower() or not scheme.replace("+", "").isalnum():
            raise ValueError(f"a URL scheme is lower-case letters and digits, got {scheme!r}")
        if scheme in _table and not replace:
            raise ValueError(f"URL scheme {scheme!r} is taken; pass replace=True to replace it")
    for scheme in spec.schemes:
        _table[scheme] = spec


def unregister_backend(scheme: str) -> None:
    """Remove ``scheme`` from the table (a built-in scheme goes back to its own row)."""
    builtin = _BUILTIN.get(scheme)
    if builtin is None:
        _table.pop(scheme, None)
    else:
        _table[scheme] = builtin


def registered_schemes() -> list[str]:
    """Return every registered URL scheme, sorted."""
    return sorted(_table)


def backend_spec(url: str) -> BackendSpec:
    """Return the row for the scheme of ``url``.

    A scheme not in the table is looked up among the installed packages'
    entry points of the group ``trioqueue.backends`` (name: the scheme,
    value: ``"module:SPEC"``), so ``trioqueue status --backend myscheme://``
    finds a third-party backend without importing it first.

    Raises:
      TypeError: if ``url`` is not a str.
      ValueError: for a scheme nobody registered (the message lists the known ones).
      ImportError: if the backend's module needs a package that is not installed.
    """
    if not isinstance(url, str):
        raise TypeError(f"a backend URL must be a str, got {type(url).__name__}")
    scheme = scheme_of(url)
    row = _table.get(scheme)
    if row is None and scheme:
        row = _from_entry_points(scheme)
    if row is None:
        known = ", ".join(f"{s}://" for s in registered_schemes())
        raise ValueError(
            f"unknown backend URL {redact_url(url)!r}: use a URL of a registered scheme "
            f"({known}), e.g. sqlite:///path.db"
        )
    return _load(scheme) if isinstance(row, str) else row


def _from_entry_points(scheme: str) -> BackendSpec | None:
    """Register and return the spec an installed package names for ``scheme``, if any."""
    import importlib.metadata  # only for a scheme the table lacks: it is slow to import

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        spec = ep.load()
        if not isinstance(spec, BackendSpec):
            raise TypeError(
                f"entry point {ep.value!r} for the {scheme}:// backend is not a BackendSpec"
            )
        if scheme not in spec.schemes:
            raise ValueError(f"entry point {ep.value!r} names {scheme!r}, its spec does not")
        for s in spec.schemes:
            _table.setdefault(s, spec)
        return spec
    return None


def _load(scheme: str) -> BackendSpec:
    row = _table[scheme]
    if isinstance(row, BackendSpec):
        return row
    module, _, attr = row.partition(":")
    spec: Any = getattr(importlib.import_module(module), attr)
    for s in spec.schemes:
        if _table.get(s) == row:
            _table[s] = spec
    return spec  # type: ignore[no-any-return]
