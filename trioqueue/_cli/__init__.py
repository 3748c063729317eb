"""The ``trioqueue`` command line: run workers, push tasks, inspect and manage storage.

``main`` is the console script and ``python -m trioqueue``. The modules:
``_parser`` (the syntax), ``_main`` (running a command, exit statuses),
``_commands`` (tasks), ``_queue_commands`` (queues and workers) and
``_worker_command`` (what each command does), and what they share:
``_handlers`` (``module:handler``), ``_backends`` (the backend table's row for
``--backend``), ``_output`` (what is printed), ``_progress`` (the worker's
live line) and ``_errors``. See ``docs/cli.md``.
"""

from ._main import main as main
from ._parser import build_parser as build_parser
from ._parser import parse_duration as parse_duration

__all__ = ["build_parser", "main", "parse_duration"]
