"""OpenTelemetry traces on the Triton runtime (serving/tracing.py): a transformer with --otlp_traces_endpoint in
front of the session's MiniLM Triton sends one request's span tree, the caller's traceparent continued, to an OTLP
receiver built on the protocol's own message types (tests/test_tracing.py)."""

import pytest

from ..servers import NO_DRAIN_DELAY, ServerStarter
from ..test_tracing import OtlpReceiver, check_trace


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def traced_transformer(tmp_path_factory, minilm_triton, receiver):
    starter = ServerStarter(tmp_path_factory.mktemp("traced-transformer"))
    triton = minilm_triton.triton
    try:
        yield starter.start("hfserve.transformer", minilm_triton.export, minilm_triton.model_name,
                            "--predictor_host", triton.grpc_target,
                            "--triton_metrics_url", f"http://127.0.0.1:{triton.metrics_port}/metrics",
                            "--otlp_traces_endpoint", receiver.url, ready_path="/v2/models/{model}/ready",
                            timeout=120, env=NO_DRAIN_DELAY)
    finally:
        starter.stop_all()


def test_one_request_gives_the_span_tree_on_the_triton_runtime(traced_transformer, receiver):
    server = traced_transformer
    spans = check_trace(receiver, server.url, "/openai/v1/embeddings",
                        {"model": server.model_name, "input": ["one", "two texts", "three"]},
                        "kserve-huggingface-triton")
    forward = {a.key: a.value.int_value for a in spans["forward"].attributes}
    assert forward["texts"] == 3 and forward["tokens"] > 3
