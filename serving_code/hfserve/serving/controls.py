"""The serving controls every HTTP route shares, as (middleware, options) pairs for HFModelServer:
per-request timing headers and backpressure. Truncation is the model's (ModelSettings.auto_truncate)."""

from .backpressure import ConcurrencyLimit
from .metrics import RequestMetrics
from .timing import TimingHeaders
from .tracing import TraceRequests


def http_controls(max_concurrent_requests: int) -> tuple:
    # Later entries wrap earlier ones: the concurrency limit refuses before any timing or parsing starts.
    # RequestMetrics outermost: it counts the refused requests (429) too.
    return ((TimingHeaders, {}), (ConcurrencyLimit, {"max_concurrent": max_concurrent_requests}),
            (RequestMetrics, {}), (TraceRequests, {}))
