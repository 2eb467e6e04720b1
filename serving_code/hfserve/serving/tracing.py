"""Optional OpenTelemetry traces (docs/observability.md), off unless --otlp_traces_endpoint names an OTLP/HTTP
receiver (e.g. http://otel-collector:4318/v1/traces).

Each HTTP request is a server span that continues the caller's W3C `traceparent`; the encoder pipeline adds its
children: `tokenize`, `forward` (with `queue` and `inference` children cut at the times the request's timing
measured) and `postprocess`. The Triton runtime's transformer sends the trace context to Triton in the gRPC
metadata of each inference call (`inject`). Spans are exported in batches by a background thread; when tracing is
off every helper here is a no-op and the OpenTelemetry SDK is not imported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import route_family

_tracer = None  # an opentelemetry Tracer once configure() was given an endpoint
_provider = None


def configure(endpoint: str | None, service_name: str) -> None:
    """Exports spans to `endpoint` (OTLP over HTTP, protobuf) as `service_name`; nothing when endpoint is empty."""
    global _tracer, _provider
    if not endpoint or _tracer is not None:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5),
                                                    schedule_delay_millis=500))
    _tracer = _provider.get_tracer("hfserve")


def enabled() -> bool:
    return _tracer is not None


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A child span of the current one (a no-op without tracing)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def record(name: str, start_s: float, end_s: float, **attributes: Any) -> None:
    """A finished child span between two time.perf_counter() readings (queue and inference: measured, not
    wrapped)."""
    if _tracer is None:
        return
    to_ns = time.time_ns() - int(time.perf_counter() * 1e9)
    started = _tracer.start_span(name, start_time=int(start_s * 1e9) + to_ns, attributes=attributes)
    started.end(end_time=int(end_s * 1e9) + to_ns)


def inject(metadata: list[tuple[str, str]] | None = None) -> list[tuple[str, str]] | None:
    """`metadata` plus the current trace context (traceparent, tracestate) for an outgoing gRPC call."""
    if _tracer is None:
        return metadata
    from opentelemetry.propagate import inject as put

    carrier: dict[str, str] = {}
    put(carrier)
    return [*(metadata or []), *carrier.items()] or None


class TraceRequests:
    """ASGI: a server span per HTTP request (named by method and route family, never by the client's path),
    continuing the request's `traceparent`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, Status, StatusCode

        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        family = route_family(scope["method"], scope["path"])
        with _tracer.start_as_current_span(f"{scope['method']} {family}", context=extract(headers),
                                           kind=SpanKind.SERVER,
                                           attributes={"http.request.method": scope["method"],
                                                       "http.route": family}) as server_span:
            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    server_span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        server_span.set_status(Status(StatusCode.ERROR))
                await send(message)

            await self.app(scope, receive, send_traced)
