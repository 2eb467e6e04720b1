"""TEI-compatible routes, reranking and the serving controls every route shares (truncation, timing headers),
against any target: /embed, /predict, /rerank, /tokenize, /decode, /info, /health, /v1/rerank."""

import numpy as np
import pytest

from conformance import protocol as P

pytestmark = pytest.mark.tei

LONG = "serving long documents needs an explicit choice about truncation " * 120  # past any BERT window
PHASES = ("tokenization", "queue", "inference", "compute", "total")
QUERY = "where is the capital of france"
DOCS = ["paris is the capital of france", "bananas are yellow", "the cat sat on the mat", "tokyo is in japan"]


def test_embed_equals_v1_and_openai(minilm):
    with minilm.http() as http:
        embed = np.asarray(P.ok_json(http.post("/embed", json={"inputs": P.TEXTS})))
        v1 = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
        openai = P.openai_vectors(P.ok_json(P.openai_embeddings(http, minilm.model_name, P.TEXTS)))
        single = np.asarray(P.ok_json(http.post("/embed", json={"inputs": P.TEXTS[0]})))
    P.assert_embeddings(embed, len(P.TEXTS), minilm.embedding_dim)
    P.assert_close(embed, v1, P.ATOL, "/embed vs V1")
    P.assert_close(embed, openai, P.ATOL, "/embed vs OpenAI")
    assert single.shape == (1, embed.shape[1])


def test_truncate_false_names_the_limit_on_every_route(minilm):
    with minilm.http() as http:
        info = P.ok_json(http.get("/info"))
        limit = f"limit of {info['max_input_length']} tokens"
        refused = {
            "tei": http.post("/embed", json={"inputs": LONG, "truncate": False}),
            "v1": http.post(f"/v1/models/{minilm.model_name}:predict",
                            json={"instances": [LONG], "parameters": {"truncate": False}}),
            "v2": http.post(f"/v2/models/{minilm.model_name}/infer",
                            json={**P.v2_body([LONG]), "parameters": {"truncate": False}}),
            "openai": http.post("/openai/v1/embeddings", json={"model": minilm.model_name, "input": LONG,
                                                               "truncate": False}),
        }
        for route, response in refused.items():
            body = P.assert_json_error(response, 413 if route == "tei" else 400, 413 if route == "tei" else 400)
            assert limit in body["error"], (route, body)
        served = http.post("/embed", json={"inputs": LONG, "truncate": True})
    assert served.status_code == 200, served.text


def test_timing_headers(minilm):
    with minilm.http() as http:
        response = http.post("/embed", json={"inputs": P.TEXTS})
    assert response.status_code == 200
    ms = {p: float(response.headers[f"x-{p}-time"]) for p in PHASES}
    assert ms["total"] + 0.002 >= ms["compute"] >= ms["queue"] + ms["inference"] - 0.002, ms


def test_info_health_tokenize_decode(minilm):
    with minilm.http() as http:
        info = P.ok_json(http.get("/info"))
        assert http.get("/health").status_code == 200
        tokens = P.ok_json(http.post("/tokenize", json={"inputs": ["Hello world"]}))
        decoded = P.ok_json(http.post("/decode", json={"ids": [t["id"] for t in tokens[0]]}))
    assert info["task"] == "text_embedding" and "embedding" in info["model_type"]
    assert info["max_input_length"] > 0 and info["max_client_batch_size"] > 0 and info["max_concurrent_requests"] > 0
    assert "max_batch_requests" in info and "max_batch_tokens" in info
    assert tokens[0][0]["special"] and not tokens[0][1]["special"]
    assert decoded == ["hello world"]


def test_tei_error_shape(minilm):
    with minilm.http() as http:
        for path, body, status in (("/embed", {"inputs": 5}, 422), ("/rerank", {"query": "q", "texts": ["a"]}, 400)):
            response = http.post(path, json=body)
            assert response.status_code == status, (path, response.text)
            assert response.json()["error_type"] == "Validation" and response.json()["error"]
        P.v1_embeddings(P.v1_predict(http, minilm.model_name, ["still serving"]))


RERANK_IDS = ("huggingface-tiny-rerank", "triton-tiny-rerank")


def _reranker(target, runtime):
    if target.kind != "local":
        pytest.skip("the cross-encoder is a tiny checkpoint built on this machine: --target local only")
    target.local.needed.update(RERANK_IDS)  # the first get() starts both pods at once
    return target.get(f"{runtime}-tiny-rerank")


@pytest.mark.timeout(900)  # starts its two pods itself (no fixture does), Triton's within the test's time
def test_rerank_both_runtimes_agree(target):
    results = {}
    for runtime in ("huggingface", "triton"):
        dep = _reranker(target, runtime)
        with dep.http() as http:
            tei = P.ok_json(http.post("/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True}))
            cohere = P.ok_json(http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS, "top_n": 2}))
            refused = http.post("/rerank", json={"query": QUERY, "texts": [LONG], "truncate": False})
        scores = [r["score"] for r in tei]
        assert scores == sorted(scores, reverse=True) and sorted(r["index"] for r in tei) == list(range(len(DOCS)))
        assert [r["index"] for r in cohere["results"]] == [r["index"] for r in tei][:2]
        P.assert_close([r["relevance_score"] for r in cohere["results"]], 1 / (1 + np.exp(-np.asarray(scores[:2]))),
                       P.ATOL, "relevance_score = sigmoid(logit)")
        assert refused.status_code == 413 and "limit of" in refused.json()["error"]
        results[runtime] = tei
    hf, triton = results["huggingface"], results["triton"]
    assert [r["index"] for r in hf] == [r["index"] for r in triton]
    P.assert_close([r["score"] for r in hf], [r["score"] for r in triton], P.ATOL, "rerank logits across runtimes")
