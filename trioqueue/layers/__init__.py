"""Middleware layers, one module each (``XLayer`` configures, the service does the work)."""

from .circuit_breaker import CircuitBreakerLayer as CircuitBreakerLayer
from .circuit_breaker import CircuitState as CircuitState
from .concurrency import ConcurrencyLimitLayer as ConcurrencyLimitLayer
from .log import LogLayer as LogLayer
from .metrics import MetricsLayer as MetricsLayer
from .metrics import QueueDepthCollector as QueueDepthCollector
from .metrics import collect_queue_depth as collect_queue_depth
from .metrics import serve_metrics as serve_metrics
from .rate_limit import RateLimitLayer as RateLimitLayer
from .retry import RetryLayer as RetryLayer
from .timeout import TimeoutLayer as TimeoutLayer
from .trace import TraceLayer as TraceLayer
from .trace import inject_trace_context as inject_trace_context
from .trace import traced_push as traced_push
