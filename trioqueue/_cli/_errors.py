"""How the command line fails: exit statuses, ``CliError``, and errors as one line."""

from __future__ import annotations

from .._errors import TrioqueueError

__all__ = [
    "EXIT_BACKEND",
    "EXIT_DUPLICATE",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_NO_STORE",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "CliError",
    "leaf",
    "one_line",
]

#: Exit statuses (documented in docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BACKEND = 3
EXIT_NOT_FOUND = 4
EXIT_DUPLICATE = 5
EXIT_TIMEOUT = 6
EXIT_NO_STORE = 7
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user-facing failure: one line on stderr and an exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def leaf(exc: BaseException) -> BaseException:
    """Return the one exception inside nested single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def one_line(exc: BaseException) -> str:
    """Return ``exc`` as one line: its message for our errors, else ``Type: message``."""
    text = " ".join(str(exc).split())
    if text and isinstance(exc, TrioqueueError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
