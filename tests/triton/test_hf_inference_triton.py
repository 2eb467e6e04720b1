"""huggingface_hub.InferenceClient, unchanged, against the kserve-huggingface-triton runtime (real Triton on the
CPU + the transformer): the encoder tasks' methods answer as the runtime's V1 route does. The classification, token
classification and fill-mask methods through Triton, against the in-process runtime, are in the conformance suite
(conformance/test_hf_inference.py, on tiny checkpoints in both runtimes' pods)."""

import httpx
import numpy as np
import pytest

from devkit.processes import http_status

from .conftest import wait_until

TEXTS = ["A man is playing a guitar.", "Someone plays the guitar on stage.", "The stock market fell on Monday."]


pytestmark = pytest.mark.timeout(900)  # the first test may start the shared MiniLM stack: minutes on 2 loaded cores


@pytest.fixture(scope="module")
def minilm(minilm_triton):
    """The session's MiniLM on runtime 2 (launcher with the chart's defaults + transformer), shared."""
    server = minilm_triton.transformer
    assert wait_until(lambda: http_status(f"{server.url}/v2/health/ready") == 200, 30) is not None
    return server


def v1(server, instances, **extra):
    response = httpx.post(f"{server.url}/v1/models/{server.model_name}:predict",
                          json={"instances": instances, **extra}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_feature_extraction_and_similarity_through_triton(minilm, inference_client):
    client = inference_client(minilm.url)
    reference = np.asarray(v1(minilm, TEXTS))
    np.testing.assert_allclose(client.feature_extraction(TEXTS), reference, atol=1e-5)
    np.testing.assert_allclose(client.feature_extraction(TEXTS[0]), reference[0], atol=1e-5)
    scores = client.sentence_similarity(TEXTS[0], TEXTS[1:])
    np.testing.assert_allclose(scores, reference[1:] @ reference[0], atol=1e-5)
    assert scores[0] > scores[1] + 0.3


def test_generation_routes_are_refused_on_the_encoder_runtime(minilm):
    response = httpx.post(f"{minilm.url}/generate", json={"inputs": "hello"}, timeout=30)
    assert response.status_code == 404 and "text_embedding" in response.json()["error"]
