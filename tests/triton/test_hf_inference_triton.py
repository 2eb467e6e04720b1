"""huggingface_hub.InferenceClient, unchanged, against the kserve-huggingface-triton runtime (real Triton on the
CPU + the transformer): the encoder tasks' methods answer as the in-process runtime does."""

import httpx
import numpy as np
import pytest
from hfserve.devtools.processes import http_status

from .conftest import wait_until

TEXTS = ["A man is playing a guitar.", "Someone plays the guitar on stage.", "The stock market fell on Monday."]


def stack(model_name: str, kind: str | None):
    @pytest.fixture(scope="module")
    def both(launch_triton, start_transformer, start_huggingface_runtime, minilm_dir, tiny_models, tmp_path_factory):
        model_dir = minilm_dir if kind is None else tiny_models(kind)
        export = tmp_path_factory.mktemp(f"exported-{model_name}")
        triton = launch_triton(model_dir, model_name, "--tokenizer_export_dir", str(export), start=False)
        triton.start(timeout=300)  # a busy 2-core CI runner can take minutes to load Triton's Python backend
        transformer = start_transformer(export, model_name, triton.grpc_target)
        assert wait_until(lambda: http_status(f"{transformer.url}/v2/health/ready") == 200, 30) is not None
        return transformer, start_huggingface_runtime(model_dir, model_name)

    return both


minilm = stack("minilm", None)
classifier = stack("sentiment", "sequence_classification")


def test_feature_extraction_and_similarity_through_triton(minilm, inference_client):
    triton, in_process = (inference_client(s.url) for s in minilm)
    np.testing.assert_allclose(triton.feature_extraction(TEXTS), in_process.feature_extraction(TEXTS), atol=1e-4)
    assert triton.feature_extraction(TEXTS[0]).shape == (384,)
    scores = triton.sentence_similarity(TEXTS[0], TEXTS[1:])
    np.testing.assert_allclose(scores, in_process.sentence_similarity(TEXTS[0], TEXTS[1:]), atol=1e-4)
    assert scores[0] > scores[1] + 0.3


def test_text_classification_through_triton(classifier, inference_client):
    triton, in_process = (inference_client(s.url) for s in classifier)
    for function in (None, "none"):
        left = triton.text_classification(TEXTS[0], function_to_apply=function)
        right = in_process.text_classification(TEXTS[0], function_to_apply=function)
        assert [r.label for r in left] == [r.label for r in right]
        np.testing.assert_allclose([r.score for r in left], [r.score for r in right], atol=1e-4)


def test_generation_routes_are_refused_on_the_encoder_runtime(minilm):
    response = httpx.post(f"{minilm[0].url}/generate", json={"inputs": "hello"}, timeout=30)
    assert response.status_code == 404 and "text_embedding" in response.json()["error"]
