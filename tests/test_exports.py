"""The public surface of ``trioqueue`` is pinned here: change it on purpose only."""

from __future__ import annotations

import trioqueue

PUBLIC = {
    "Abort", "Attempt", "Backend", "BackendClosed", "BackendError", "BackendStatistics",
    "Backoff", "CborCodec", "Codec", "CodecError", "Consumer", "DEFAULT_BACKEND",
    "DEFAULT_CONCURRENCY", "Data", "Driver", "EventKind", "Exponential", "Fixed",
    "HandlerError", "JsonCodec", "Layer", "LayerFn", "Linear", "MemoryBackend", "Meta",
    "Monitor", "Outcome", "PushError", "RetryAfter", "Service", "ServiceBuilder", "Stack",
    "Status", "StoredTask", "Task", "TaskId", "TaskSink", "TaskSinkError", "TaskTimeout",
    "TrioqueueError", "Worker", "WorkerBuilder", "WorkerContext", "WorkerEvent",
    "WorkerStatistics", "open_backend",
}  # fmt: skip


def test_public_names_are_exactly_the_pinned_ones() -> None:
    names = {n for n in dir(trioqueue) if not n.startswith("_")}
    assert names - {"backends", "drivers", "layers", "testing"} == PUBLIC


LAYERS = {
    "CircuitBreakerLayer", "CircuitState", "ConcurrencyLimitLayer", "LogLayer", "MetricsLayer",
    "QueueDepthCollector", "RateLimitLayer", "RetryLayer", "TimeoutLayer", "TraceLayer",
    "collect_queue_depth", "inject_trace_context", "serve_metrics", "traced_push",
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


def test_public_classes_claim_the_package_as_home() -> None:
    # Re-exported one by one from private modules: users never import from _x.
    for n in PUBLIC:
        obj = getattr(trioqueue, n)
        mod = getattr(obj, "__module__", "trioqueue")
        assert mod is None or mod.startswith("trioqueue") or n == "Data", (n, mod)


def test_error_hierarchy() -> None:
    assert issubclass(trioqueue.PushError, trioqueue.TaskSinkError)
    assert issubclass(trioqueue.CodecError, trioqueue.TaskSinkError)
    assert issubclass(trioqueue.TaskSinkError, trioqueue.TrioqueueError)
    assert issubclass(trioqueue.BackendClosed, trioqueue.BackendError)
    assert issubclass(trioqueue.HandlerError, TypeError)
    assert not issubclass(trioqueue.Abort, trioqueue.TrioqueueError)
