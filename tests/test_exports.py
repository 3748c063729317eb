"""The public surface of ``trioqueue`` is pinned here: change it on purpose only."""

from __future__ import annotations

import trioqueue

PUBLIC = {
    "Abort", "Attempt", "Backend", "BackendClosed", "BackendError", "BackendStatistics",
    "Backoff", "CborCodec", "Codec", "CodecError", "Consumer", "DEFAULT_BACKEND",
    "DEFAULT_CONCURRENCY", "Data", "Driver", "DuplicateTask", "EventKind", "Exponential", "Fixed",
    "HandlerError", "JsonCodec", "Layer", "LayerFn", "Linear", "MemoryBackend", "Meta",
    "Monitor", "Outcome", "PushError", "QueueDepthCollector", "RetryAfter", "Service",
    "ServiceBuilder", "Stack", "Status", "StoredTask", "Task", "TaskId", "TaskSink",
    "TaskSinkError", "TaskTimeout", "TrioqueueError", "Worker", "WorkerBuilder", "WorkerContext",
    "WorkerEvent", "WorkerStatistics", "collect_queue_depth", "open_backend", "serve_metrics",
    "Progress", "Retention", "Snooze", "TaskCancelled", "TaskFailed", "WorkerInfo",
    "ScheduleStatistics", "Tick",
    "DagFlow", "FlowError", "FlowNode", "FlowRun", "Workflow",
}  # fmt: skip


def test_public_names_are_exactly_the_pinned_ones() -> None:
    # (pytest rewrites the asserts of a plugin's package, trioqueue here: "@py_builtins".)
    names = {n for n in dir(trioqueue) if n.isidentifier() and not n.startswith("_")}
    assert names - {"asyncio", "backends", "drivers", "layers", "sync", "testing", "web"} == PUBLIC


LAYERS = {
    "CircuitBreakerLayer", "CircuitState", "ConcurrencyLimitLayer", "LogLayer", "MetricsLayer",
    "RateLimitLayer", "RetryLayer", "TimeoutLayer", "TraceLayer", "inject_trace_context",
    "traced_push",
}  # fmt: skip

TESTING = {
    "BackendFactory", "CHECK_NAMES", "CrashReport", "CrashTestFailure", "ManualClock", "Model",
    "check_backend", "make_state_machine", "run_crash_test",
}  # fmt: skip


def test_layers_and_testing_surfaces_are_pinned() -> None:
    import trioqueue.layers
    import trioqueue.testing

    def public(mod: object) -> set[str]:
        return {
            n for n in dir(mod)
            if not n.startswith("_") and not isinstance(getattr(mod, n), type(trioqueue))
        }  # fmt: skip

    assert public(trioqueue.layers) == LAYERS
    assert public(trioqueue.testing) == TESTING


def test_public_names_are_documented() -> None:
    undocumented = [
        n for n in PUBLIC
        if isinstance(getattr(trioqueue, n), type) and not getattr(trioqueue, n).__doc__
    ]  # fmt: skip
    assert undocumented == []


def test_public_classes_and_functions_live_in_private_modules_of_the_package() -> None:
    # Each is defined in a private trioqueue module (or a public sub-package's
    # module) and re-exported one by one: users never import from _x.
    homes = {}
    for n in PUBLIC:
        obj = getattr(trioqueue, n)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            homes[n] = obj.__module__
    assert "Task" in homes and "open_backend" in homes  # the check sees classes and functions
    strays = {
        n: mod
        for n, mod in homes.items()
        if not mod.startswith("trioqueue.")
        or not any(part.startswith("_") or part == "backends" for part in mod.split(".")[1:])
    }
    assert strays == {}


def test_error_hierarchy() -> None:
    assert issubclass(trioqueue.PushError, trioqueue.TaskSinkError)
    assert issubclass(trioqueue.CodecError, trioqueue.TaskSinkError)
    assert issubclass(trioqueue.DuplicateTask, trioqueue.PushError)
    assert issubclass(trioqueue.TaskSinkError, trioqueue.TrioqueueError)
    assert issubclass(trioqueue.BackendClosed, trioqueue.BackendError)
    assert issubclass(trioqueue.HandlerError, TypeError)
    assert not issubclass(trioqueue.Abort, trioqueue.TrioqueueError)
