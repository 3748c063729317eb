"""The public seam for storage backends: what a backend author implements and registers.

A backend is the shared bridge (``Backend``) around a ``Driver``, the few
batch operations a storage engine implements, plus one row in the backend
table (``BackendSpec``, added with ``register_backend``) that maps a URL
scheme to its opener, its migration, its schema version and the driver
exceptions that are transient. ``open_backend``, the command line and the
test harnesses find a backend only through that table. ``docs/drivers.md``
walks through a complete third-party backend written against this module.
"""

from ._backend import Backend as Backend
from ._driver import CANCEL_REQUESTED as CANCEL_REQUESTED
from ._driver import Driver as Driver
from ._driver import Extended as Extended
from ._driver import Outcome as Outcome
from ._driver import RetentionRule as RetentionRule
from ._driver import StoredTask as StoredTask
from ._driver import WorkerRecord as WorkerRecord
from ._driver import apply_outcome as apply_outcome
from ._flow._records import FlowDriver as FlowDriver
from ._flow._records import Join as Join
from ._flow._records import Transition as Transition
from ._flow._records import gathered as gathered
from ._flow._resume import RetryKind as RetryKind
from ._flow._resume import is_record_of as is_record_of
from ._flow._resume import retry_kind as retry_kind
from ._flow._resume import run_of as run_of
from ._registry import BackendSpec as BackendSpec
from ._registry import backend_spec as backend_spec
from ._registry import redact_url as redact_url
from ._registry import register_backend as register_backend
from ._registry import registered_schemes as registered_schemes
from ._registry import unregister_backend as unregister_backend
from ._schedule._record import ScheduleRecord as ScheduleRecord
from ._schedule._record import merge_schedule as merge_schedule
from ._task import Status as Status

__all__ = [
    "CANCEL_REQUESTED",
    "Backend",
    "BackendSpec",
    "Driver",
    "Extended",
    "FlowDriver",
    "Join",
    "Outcome",
    "RetentionRule",
    "RetryKind",
    "ScheduleRecord",
    "Status",
    "StoredTask",
    "Transition",
    "WorkerRecord",
    "apply_outcome",
    "backend_spec",
    "gathered",
    "is_record_of",
    "merge_schedule",
    "redact_url",
    "register_backend",
    "registered_schemes",
    "retry_kind",
    "run_of",
    "unregister_backend",
]
