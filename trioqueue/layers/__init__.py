"""Middleware layers, one module each (``XLayer`` configures, the service does the work)."""

from .circuit_breaker import CircuitBreakerLayer as CircuitBreakerLayer
from .circuit_breaker import CircuitState as CircuitState
from .concurrency import ConcurrencyLimitLayer as ConcurrencyLimitLayer
from .log import LogLayer as LogLayer
from .metrics import MetricsLayer as MetricsLayer
from .rate_limit import RateLimitLayer as RateLimitLayer
from .retry import RetryLayer as RetryLayer
from .timeout import TimeoutLayer as TimeoutLayer
from .trace import TraceLayer as TraceLayer
from .trace import inject_trace_context as inject_trace_context
from .trace import traced_push as traced_push
