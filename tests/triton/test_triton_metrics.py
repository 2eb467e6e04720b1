"""The Triton runtime's /metrics (docs/observability.md): the transformer's own series and Triton's, bridged from
Triton's metrics port on loopback, on the one serving port; 503s counted and the bridge's state shown when Triton
is not there."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devkit.processes import free_port

from ..servers import NO_DRAIN_DELAY, ServerStarter
from ..test_metrics import samples, value, wait_for

# What Triton exports on CPU (its GPU families, nv_gpu_*, come only with a GPU).
TRITON_FAMILIES = ("nv_inference_pending_request_count", "nv_inference_request_success", "nv_inference_exec_count",
                   "nv_inference_count", "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us")


def families(url: str) -> dict:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_one_scrape_of_the_serving_port_has_the_transformer_and_triton(minilm_triton):
    server = minilm_triton.transformer
    name = server.model_name
    found = wait_for(lambda: (f := families(server.url)) and all(n in f for n in TRITON_FAMILIES) and f,
                     timeout=30, what=f"Triton's families {TRITON_FAMILIES} on the transformer's /metrics")
    assert found["hfserve_triton_metrics_up"].samples[0].value == 1
    assert {s.labels["model"] for s in found["nv_inference_request_success"].samples} == {name}
    executed = value(samples(server.url), "nv_inference_exec_count", model=name, version="1")

    response = httpx.post(f"{server.url}/openai/v1/embeddings", json={"model": name, "input": ["a", "b c d"]},
                          timeout=60)
    assert response.status_code == 200, response.text
    after = wait_for(lambda: (m := samples(server.url)) and
                     value(m, "nv_inference_exec_count", model=name, version="1") > executed and m,
                     timeout=30, what="Triton's execution count to grow on the transformer's /metrics")
    assert value(after, "hfserve_input_tokens_total", model_name=name) >= response.json()["usage"]["prompt_tokens"]
    assert value(after, "hfserve_requests_total", family="openai", code="200") >= 1
    assert value(after, "hfserve_queue_texts", model_name=name) == 0
    assert value(after, "hfserve_triton_metrics_age_seconds") < 10


@pytest.fixture(scope="module")
def transformer_without_triton(tmp_path_factory, minilm_dir):
    starter = ServerStarter(tmp_path_factory.mktemp("lonely-transformer"))
    try:
        yield starter.start("hfserve.transformer", minilm_dir, "alone", "--predictor_host", f"127.0.0.1:{free_port()}",
                            "--triton_metrics_url", f"http://127.0.0.1:{free_port()}/metrics", env=NO_DRAIN_DELAY)
    finally:
        starter.stop_all()


def test_without_triton_requests_count_as_503_and_the_bridge_says_down(transformer_without_triton):
    server = transformer_without_triton
    before = samples(server.url)
    for route, body in (("/embed", {"inputs": "hi"}), (f"/v2/models/{server.model_name}/infer",
                        {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]})):
        assert httpx.post(f"{server.url}{route}", json=body, timeout=30).status_code == 503
    after = samples(server.url)
    for family in ("tei", "v2"):
        assert value(after, "hfserve_requests_total", family=family, code="503") - \
            value(before, "hfserve_requests_total", family=family, code="503") == 1
    assert value(after, "hfserve_triton_metrics_up") == 0
    assert not any(n.startswith("nv_") for n, _ in after)
    assert value(after, "hfserve_queue_texts", model_name=server.model_name) == 0
