"""Where a request's time goes: tokenization, waiting for a forward pass (queue), the forward pass (inference),
all model-side work (compute) and the whole request (total).

The model records its phases into the RequestTiming of the current request (a context variable the HTTP
middleware sets; gRPC and internal calls get a fresh one), and every phase is also observed in the
`hfserve_request_phase_seconds` histogram on /metrics. The middleware answers with TEI's timing headers
(milliseconds): x-tokenization-time, x-queue-time, x-inference-time, x-compute-time, x-total-time.
What "queue" and "inference" cover per runtime is documented in docs/architecture.md.
"""

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PHASES = ("tokenization", "queue", "inference", "compute", "total")

PHASE_SECONDS = Histogram(
    "hfserve_request_phase_seconds",
    "Seconds one request spent in each phase: tokenization, queue, inference, compute (model side), total (HTTP)",
    ["model_name", "phase"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


@dataclass
class RequestTiming:
    started: float = field(default_factory=time.perf_counter)
    model_name: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, model_name: str, phase: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.model_name = model_name
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        PHASE_SECONDS.labels(model_name=model_name, phase=phase).observe(seconds)

    def headers(self, total_s: float) -> list[tuple[bytes, bytes]]:
        values = {**{p: self.seconds.get(p, 0.0) for p in PHASES[:-1]}, "total": total_s}
        return [(f"x-{phase}-time".encode(), f"{seconds * 1000:.3f}".encode()) for phase, seconds in values.items()]


_current: ContextVar[RequestTiming | None] = ContextVar("hfserve_request_timing", default=None)


def current_timing() -> RequestTiming:
    """The current request's timing (a fresh, unreported one outside an HTTP request, e.g. on gRPC)."""
    timing = _current.get()
    if timing is None:
        timing = RequestTiming()
        _current.set(timing)
    return timing


class TimingHeaders:
    """ASGI middleware: starts each request's RequestTiming and adds the x-*-time headers to responses of
    requests that reached a model; observes the total in the phase histogram."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timing = RequestTiming()
        token = _current.set(timing)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and timing.model_name is not None:
                total = time.perf_counter() - timing.started
                PHASE_SECONDS.labels(model_name=timing.model_name, phase="total").observe(total)
                message = {**message, "headers": [*message.get("headers", []), *timing.headers(total)]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            _current.reset(token)
