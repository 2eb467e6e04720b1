"""The serving controls every HTTP route shares, as (middleware, options) pairs for HFModelServer:
per-request timing headers and backpressure. Truncation is the model's (ModelSettings.auto_truncate)."""

from .backpressure import ConcurrencyLimit, Slots
from .cancellation import CancelOnDisconnect
from .metrics import RequestMetrics, count_in_flight
from .timing import TimingHeaders
from .tracing import TraceRequests


def http_controls(slots: Slots | int, max_body_bytes: int = 1 << 20) -> tuple:
    # Later entries wrap earlier ones: the concurrency limit refuses before any timing or parsing starts.
    # RequestMetrics outermost: it counts the refused requests (429) too.
    slots = slots if isinstance(slots, Slots) else Slots(slots)
    count_in_flight(slots)
    return ((TimingHeaders, {}), (ConcurrencyLimit, {"slots": slots, "max_body_bytes": max_body_bytes}),
            (RequestMetrics, {}), (TraceRequests, {}))


def generation_controls() -> tuple:
    """Innermost, for servers with a generative model: a handler learns that its client went away."""
    return ((CancelOnDisconnect, {}),)
