"""trioqueue: durable background jobs for Trio.

Push tasks into a backend (memory, SQLite, PostgreSQL) through bounded
channels; run them with workers built from a tower-style middleware stack.
"""

from ._backend import Backend as Backend
from ._backend import BackendStatistics as BackendStatistics
from ._backoff import Backoff as Backoff
from ._backoff import Exponential as Exponential
from ._backoff import Fixed as Fixed
from ._backoff import Linear as Linear
from ._builder import DEFAULT_CONCURRENCY as DEFAULT_CONCURRENCY
from ._builder import WorkerBuilder as WorkerBuilder
from ._codec import CborCodec as CborCodec
from ._codec import Codec as Codec
from ._codec import JsonCodec as JsonCodec
from ._consumer import Consumer as Consumer
from ._context import EventKind as EventKind
from ._context import WorkerContext as WorkerContext
from ._context import WorkerEvent as WorkerEvent
from ._context import WorkerStatistics as WorkerStatistics
from ._driver import Driver as Driver
from ._driver import Outcome as Outcome
from ._driver import StoredTask as StoredTask
from ._errors import Abort as Abort
from ._errors import BackendClosed as BackendClosed
from ._errors import BackendError as BackendError
from ._errors import CodecError as CodecError
from ._errors import DuplicateTask as DuplicateTask
from ._errors import HandlerError as HandlerError
from ._errors import PushError as PushError
from ._errors import RetryAfter as RetryAfter
from ._errors import Snooze as Snooze
from ._errors import TaskCancelled as TaskCancelled
from ._errors import TaskFailed as TaskFailed
from ._errors import TaskSinkError as TaskSinkError
from ._errors import TaskTimeout as TaskTimeout
from ._errors import TrioqueueError as TrioqueueError
from ._flow._define import DagFlow as DagFlow
from ._flow._define import FlowNode as FlowNode
from ._flow._define import Workflow as Workflow
from ._flow._run import FlowRun as FlowRun
from ._flow._spec import FlowError as FlowError
from ._handler import Data as Data
from ._handler import ServiceBuilder as ServiceBuilder
from ._handler import Stack as Stack
from ._lifecycle import Progress as Progress
from ._lifecycle import Retention as Retention
from ._lifecycle import WorkerInfo as WorkerInfo
from ._metrics_server import QueueDepthCollector as QueueDepthCollector
from ._metrics_server import collect_queue_depth as collect_queue_depth
from ._metrics_server import serve_metrics as serve_metrics
from ._monitor import Monitor as Monitor
from ._open import DEFAULT_BACKEND as DEFAULT_BACKEND
from ._open import open_backend as open_backend
from ._schedule._stats import ScheduleStatistics as ScheduleStatistics
from ._schedule._tick import Tick as Tick
from ._service import Layer as Layer
from ._service import LayerFn as LayerFn
from ._service import Service as Service
from ._sink import TaskSink as TaskSink
from ._task import Attempt as Attempt
from ._task import Meta as Meta
from ._task import Status as Status
from ._task import Task as Task
from ._task import TaskId as TaskId
from ._worker import Worker as Worker
from .backends.memory import MemoryBackend as MemoryBackend

__version__ = "0.1.0"
