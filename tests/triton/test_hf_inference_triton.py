"""huggingface_hub.InferenceClient, unchanged, against the kserve-huggingface-triton runtime (real Triton on the
CPU + the transformer): the encoder tasks' methods answer as the runtime's V1 route does. (That both runtimes
answer alike is the conformance suite's parity group, test_hf_inference.py included.)"""

import httpx
import numpy as np
import pytest
from hfserve.devtools.processes import http_status

from .conftest import wait_until

TEXTS = ["A man is playing a guitar.", "Someone plays the guitar on stage.", "The stock market fell on Monday."]


def stack(model_name: str, kind: str | None):
    @pytest.fixture(scope="module")
    def transformer(launch_triton, start_transformer, minilm_dir, tiny_models, tmp_path_factory):
        model_dir = minilm_dir if kind is None else tiny_models(kind)
        export = tmp_path_factory.mktemp(f"exported-{model_name}")
        triton = launch_triton(model_dir, model_name, "--tokenizer_export_dir", str(export), start=False)
        triton.start(timeout=300)  # a busy 2-core CI runner can take minutes to load Triton's Python backend
        server = start_transformer(export, model_name, triton.grpc_target)
        assert wait_until(lambda: http_status(f"{server.url}/v2/health/ready") == 200, 30) is not None
        return server

    return transformer


minilm = stack("minilm", None)
classifier = stack("sentiment", "sequence_classification")


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


def test_text_classification_through_triton(classifier, inference_client):
    client = inference_client(classifier.url)
    ranked = client.text_classification(TEXTS[0])
    probabilities = v1(classifier, [TEXTS[0]], parameters={"return_probabilities": True})[0]["probabilities"]
    assert {r.label: r.score for r in ranked} == pytest.approx(probabilities, abs=1e-6)
    logits = client.text_classification(TEXTS[0], function_to_apply="none")
    shifted = np.exp([r.score for r in logits])
    assert [r.label for r in logits] == [r.label for r in ranked]
    np.testing.assert_allclose(shifted / shifted.sum(), [r.score for r in ranked], atol=1e-6)


def test_generation_routes_are_refused_on_the_encoder_runtime(minilm):
    response = httpx.post(f"{minilm.url}/generate", json={"inputs": "hello"}, timeout=30)
    assert response.status_code == 404 and "text_embedding" in response.json()["error"]
