"""The TEI routes, reranking and the serving controls on the kserve-huggingface-triton runtime: the transformer
in front of a real Triton (Python backend, CPU) serving tiny checkpoints. Pairs reach Triton as token_type_ids.

References: the cross-encoder's logits from transformers, computed here; embeddings from the other routes.
"""

import httpx
import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from devkit.processes import http_status

from .conftest import wait_until

QUERY = "where is the capital of france"
DOCS = ["paris is the capital of france", "bananas are yellow", "the cat sat on the mat", "tokyo is in japan"]
LONG = "the quick brown fox jumps over the lazy dog " * 30  # above the tiny models' 64 tokens


def _stack(launch_triton, start_transformer, model_dir, name, *extra):
    triton = launch_triton(model_dir, name, "--exit_timeout_s", "20", start=False)
    triton.start(timeout=360)  # the Python backend imports torch and warms up: slow on a busy 2-core runner
    transformer = start_transformer(model_dir, name, triton.grpc_target, *extra)
    assert wait_until(lambda: http_status(f"{transformer.url}/v2/health/ready") == 200, 30) is not None
    return transformer


@pytest.fixture(scope="module")
def reranker(launch_triton, start_transformer, tiny_models):
    return _stack(launch_triton, start_transformer, tiny_models("rerank"), "reranker")


@pytest.fixture(scope="module")
def embedder(launch_triton, start_transformer, tiny_models):
    return _stack(launch_triton, start_transformer, tiny_models("text_embedding"), "embedder",
                  "--auto_truncate", "false")


def post(server, path, body):
    return httpx.post(f"{server.url}{path}", json=body, timeout=120)


def logits_of(model_dir, pairs):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return np.asarray([model(**tokenizer(q, d, truncation=True, return_tensors="pt")).logits[0, 0].item()
                           for q, d in pairs])


def test_rerank_through_triton_matches_the_cross_encoder(reranker, tiny_models):
    logits = logits_of(tiny_models("rerank"), [(QUERY, d) for d in DOCS])
    order = list(np.argsort(-logits, kind="stable"))
    raw = post(reranker, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    assert [r["index"] for r in raw] == order
    np.testing.assert_allclose([r["score"] for r in raw], logits[order], atol=1e-5)
    cohere = post(reranker, "/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": 2}).json()
    assert [r["index"] for r in cohere["results"]] == order[:2]
    np.testing.assert_allclose([r["relevance_score"] for r in cohere["results"]],
                               1 / (1 + np.exp(-logits[order[:2]])), atol=1e-6)
    v2 = post(reranker, "/v2/models/reranker/infer", {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(DOCS)], "data": [QUERY] * len(DOCS)},
        {"name": "text_pair", "datatype": "BYTES", "shape": [len(DOCS)], "data": DOCS}],
        "parameters": {"raw_scores": True}}).json()
    np.testing.assert_allclose(v2["outputs"][0]["data"], logits, atol=1e-5)


def test_truncation_and_timing_through_triton(reranker):
    refused = post(reranker, "/rerank", {"query": QUERY, "texts": [LONG], "truncate": False})
    assert refused.status_code == 413 and "limit of 64 tokens" in refused.json()["error"]
    served = post(reranker, "/rerank", {"query": QUERY, "texts": [LONG, "short"]})
    assert served.status_code == 200
    ms = {p: float(served.headers[f"x-{p}-time"]) for p in ("tokenization", "queue", "inference", "compute", "total")}
    assert ms["inference"] > 0 and ms["total"] + 0.002 >= ms["compute"] >= ms["queue"] + ms["inference"] - 0.002


def test_info_reads_tritons_batch_limit(reranker):
    info = httpx.get(f"{reranker.url}/info").json()
    assert info["task"] == "rerank" and info["max_input_length"] == 64
    assert info["max_batch_requests"] == 32  # the launcher's default max_batch_size in config.pbtxt
    assert httpx.get(f"{reranker.url}/health").status_code == 200


def test_embed_parity_and_truncation_off_by_default(embedder):
    texts = ["The weather is lovely today.", "Databases store rows."]
    embed = np.asarray(post(embedder, "/embed", {"inputs": texts}).json())
    v1 = np.asarray(post(embedder, "/v1/models/embedder:predict", {"instances": texts}).json()["predictions"])
    openai = post(embedder, "/openai/v1/embeddings", {"model": "embedder", "input": texts}).json()
    np.testing.assert_allclose(embed, v1, atol=1e-6)
    np.testing.assert_allclose(embed, [d["embedding"] for d in openai["data"]], atol=1e-6)
    for path, body, status in (("/embed", {"inputs": LONG}, 413),
                               ("/v1/models/embedder:predict", {"instances": [LONG]}, 400),
                               ("/openai/v1/embeddings", {"model": "embedder", "input": LONG}, 400)):
        response = post(embedder, path, body)
        assert response.status_code == status and "limit of 64 tokens" in response.text, (path, response.text)
    assert post(embedder, "/embed", {"inputs": LONG, "truncate": True}).status_code == 200
