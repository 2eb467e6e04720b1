"""OpenTelemetry traces (serving/tracing.py): an OTLP/HTTP receiver written with the protocol's own message types
(opentelemetry-proto's ExportTraceServiceRequest/Response) gets the spans of one request, with the caller's W3C
traceparent continued: server span -> tokenize, forward (-> queue, inference), postprocess. Runtime 1 here; the
Triton runtime in tests/triton/test_triton_tracing.py."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from devkit.processes import free_port

from .servers import NO_DRAIN_DELAY, ServerStarter


def _ids_as_base64(node):
    """OTLP/HTTP JSON writes trace and span ids in hex, where protobuf's JSON mapping of bytes is base64."""
    if isinstance(node, dict):
        return {k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId", "parentSpanId") and v
                else _ids_as_base64(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_ids_as_base64(v) for v in node]
    return node


class OtlpReceiver:
    """POST /v1/traces (protobuf) on loopback; keeps every span with its service name."""

    def __init__(self):
        self.spans: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.headers.get("content-type", "").startswith("application/json"):  # OTLP/HTTP JSON (Triton)
                    request = json_format.ParseDict(_ids_as_base64(json.loads(body)), ExportTraceServiceRequest(),
                                                    ignore_unknown_fields=True)
                else:
                    request = ExportTraceServiceRequest.FromString(body)
                with receiver.lock:
                    for resource_spans in request.resource_spans:
                        service = next(a.value.string_value for a in resource_spans.resource.attributes
                                       if a.key == "service.name")
                        for scope_spans in resource_spans.scope_spans:
                            receiver.spans += [(service, s) for s in scope_spans.spans]
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def trace(self, trace_id: bytes, names: set[str], timeout: float = 60.0) -> dict[str, object]:
        """The spans of `trace_id` by name, once every one of `names` has arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = {s.name: (service, s) for service, s in self.spans if s.trace_id == trace_id}
            if names <= set(found):
                return found
            time.sleep(0.1)
        raise AssertionError(f"spans {sorted(names - set(found))} of the trace never arrived (got {sorted(found)})")


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_runtime(tmp_path_factory, tiny_models, receiver):
    starter = ServerStarter(tmp_path_factory.mktemp("traced"))
    try:
        yield starter.start("hfserve.huggingface", tiny_models("text_embedding"), "traced",
                            "--otlp_traces_endpoint", receiver.url, ready_path="/v2/models/{model}/ready",
                            env=NO_DRAIN_DELAY)
    finally:
        starter.stop_all()


def check_trace(receiver: OtlpReceiver, url: str, path: str, body: dict, service: str) -> dict:
    """Sends one request continuing a trace of ours; returns its spans by name after checking their tree."""
    trace_id, caller_span = secrets.token_bytes(16), secrets.token_bytes(8)
    response = httpx.post(f"{url}{path}", json=body, timeout=60,
                          headers={"traceparent": f"00-{trace_id.hex()}-{caller_span.hex()}-01"})
    assert response.status_code == 200, response.text
    names = {"POST openai", "tokenize", "forward", "queue", "inference", "postprocess"}
    spans = receiver.trace(trace_id, names)
    assert {spans[n][0] for n in names} == {service}
    by_name = {n: s for n, (_, s) in spans.items()}
    server = by_name["POST openai"]
    assert server.parent_span_id == caller_span  # the caller's traceparent is continued
    for child in ("tokenize", "forward", "postprocess"):
        assert by_name[child].parent_span_id == server.span_id, child
    for phase in ("queue", "inference"):
        assert by_name[phase].parent_span_id == by_name["forward"].span_id, phase
    forward, queue, inference = by_name["forward"], by_name["queue"], by_name["inference"]
    slack = 5_000_000  # 5 ms: the phases are cut from perf_counter readings, the spans stamped by the wall clock
    assert forward.start_time_unix_nano - slack <= queue.start_time_unix_nano <= queue.end_time_unix_nano
    assert queue.end_time_unix_nano <= inference.start_time_unix_nano + slack
    assert inference.end_time_unix_nano <= forward.end_time_unix_nano + slack
    assert by_name["tokenize"].end_time_unix_nano <= forward.start_time_unix_nano + slack
    assert forward.end_time_unix_nano <= by_name["postprocess"].start_time_unix_nano + slack
    assert {a.key: a.value.int_value for a in server.attributes}.get("http.response.status_code") == 200
    return by_name


def test_one_request_gives_the_span_tree_continuing_the_callers_trace(traced_runtime, receiver):
    server = traced_runtime
    spans = check_trace(receiver, server.url, "/openai/v1/embeddings",
                        {"model": server.model_name, "input": ["one", "two texts"]}, "kserve-huggingface")
    assert {a.key: a.value.int_value for a in spans["forward"].attributes}["texts"] == 2


def test_a_request_without_traceparent_starts_a_trace_of_its_own(traced_runtime, receiver):
    server = traced_runtime
    before = len(receiver.spans)
    assert httpx.post(f"{server.url}/embed", json={"inputs": "alone"}, timeout=60).status_code == 200
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with receiver.lock:
            roots = [s for _, s in receiver.spans[before:] if s.name == "POST tei"]
        if roots:
            break
        time.sleep(0.1)
    assert roots and roots[0].parent_span_id == b""
