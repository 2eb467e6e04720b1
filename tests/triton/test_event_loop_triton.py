"""The Triton runtime's transformer answers /v2/health/live within 1 s during any single huge request, as runtime 1
does (tests/huggingface/test_event_loop.py): the same service tokenizes and post-processes in its worker threads,
and fill-mask's candidates are computed inside Triton's model (engine/encoder.py), capped in the transformer.

The transformers are started here, with 8 MiB bodies, in front of the session's shared tritonservers."""

import json
import time

import httpx
import pytest

from devkit.processes import http_status

from ..liveness_watch import HUGE, LIVE_S, LivenessWatch, post


def ready(server, timeout_s: float = 180.0):
    """Once Triton has the model ready as the transformer sees it (its readiness gates traffic)."""
    deadline = time.monotonic() + timeout_s
    while http_status(f"{server.url}/v2/models/{server.model_name}/ready") != 200:
        if time.monotonic() > deadline:
            pytest.fail(f"{server.model_name} not ready through Triton after {timeout_s:.0f} s")
        time.sleep(0.2)
    return server


@pytest.fixture(scope="module")
def minilm(minilm_triton, start_transformer):
    return ready(start_transformer(minilm_triton.export, "minilm", minilm_triton.triton.grpc_target,
                                   "--max_request_bytes", str(8 << 20)))


@pytest.fixture(scope="module")
def filler(tiny_triton, start_transformer):
    return ready(start_transformer(tiny_triton.models["fill_mask"], "fill_mask", tiny_triton.grpc))


@pytest.mark.parametrize("path, body, status", [
    ("/v1/models/minilm:predict", {"instances": HUGE, "parameters": {"truncate": False}}, 400),
    ("/v1/models/minilm:predict", {"instances": HUGE}, 200),
    ("/embed", {"inputs": HUGE, "truncate": False}, 413),
], ids=["v1-untruncated", "v1", "tei-untruncated"])
def test_liveness_answers_during_a_huge_request(minilm, path, body, status):
    content = json.dumps(body).encode()  # before watching: the test's own encoding is not the server's stall
    with LivenessWatch(minilm.url) as watch:
        response = post(minilm.url, path, content)
    assert response.status_code == status, response.text[:300]
    watch.assert_live_within(LIVE_S)
    assert httpx.get(f"{minilm.url}/v2/models/minilm/ready", timeout=10).status_code == 200  # Triton still seen


def test_liveness_answers_during_big_tokenize_and_decode(minilm):
    with LivenessWatch(minilm.url) as watch:
        dots = post(minilm.url, "/tokenize", {"inputs": "." * (1 << 20)})
        fits = post(minilm.url, "/tokenize", {"inputs": ["word " * 8000, "word " * 8000]})
        over = post(minilm.url, "/decode", {"ids": [[2773] * 300] * 64})
    assert dots.status_code == 413 and "16384" in dots.json()["error"], dots.text[:300]
    assert fits.status_code == 200 and [len(t) for t in fits.json()] == [8002, 8002]
    assert over.status_code == 413 and "--max_decode_tokens" in over.json()["error"], over.text[:300]
    watch.assert_live_within(LIVE_S)


def test_fill_mask_through_triton_is_capped_and_live(filler):
    url, model = filler.url, filler.model_name
    with LivenessWatch(url) as watch:
        explosion = post(url, f"/v1/models/{model}:predict",
                         {"instances": [" ".join(["[MASK]"] * 60)] * 64, "parameters": {"top_k": 100}})
        largest = post(url, f"/v1/models/{model}:predict",
                       {"instances": ["the [MASK] sat " * 8] * 64, "parameters": {"top_k": 8}})
    assert explosion.status_code == 400 and "--max_masks" in explosion.json()["error"], explosion.text[:300]
    assert largest.status_code == 200, largest.text[:300]
    predictions = largest.json()["predictions"]
    assert len(predictions) == 64 and [len(m) for m in predictions[0]] == [8] * 8
    watch.assert_live_within(LIVE_S)
