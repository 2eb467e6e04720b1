"""TEI routes, reranking and the shared serving controls on the kserve-huggingface runtime (real servers on
loopback, real checkpoints: the packaged MiniLM and tiny local ones).

References are computed here, independently of the server: the cross-encoder's logits with transformers'
AutoModelForSequenceClassification on the pair, the classifier's logits likewise.
"""

import threading
import time

import httpx
import numpy as np
import pytest
import torch
from openai import OpenAI
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.servers import served

QUERY = "where is the capital of france"
DOCS = ["paris is the capital of france", "bananas are yellow", "the cat sat on the mat",
        "france has many cities", "tokyo is in japan"]
LONG = "the quick brown fox jumps over the lazy dog " * 60  # far above 64 (tiny) and 256 (MiniLM) tokens


# minilm and classifier: tests/huggingface/conftest.py
strict_minilm = served("minilm", "strict", "--auto_truncate", "false")  # truncation off by default
reranker = served("rerank", "reranker")


def post(server, path, body, **kwargs):
    return httpx.post(f"{server.url}{path}", json=body, timeout=120, **kwargs)


def pair_logits(model_dir, pairs):
    """The checkpoint's raw logits for (text, text_pair) pairs, straight from transformers."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    for first, second in pairs:  # one at a time: no padding anywhere in the reference
        batch = tokenizer(first, second, truncation=True, return_tensors="pt")
        with torch.no_grad():
            rows.append(model(**batch).logits[0].numpy())
    return np.asarray(rows, dtype=np.float64)


def v2_body(texts, pairs=None, parameters=None):
    inputs = [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
    if pairs is not None:
        inputs.append({"name": "text_pair", "datatype": "BYTES", "shape": [len(pairs)], "data": pairs})
    return {"inputs": inputs, **({"parameters": parameters} if parameters else {})}


# --- /embed and parity ----------------------------------------------------------------------------------------------

def test_embed_shapes_and_normalize(minilm):
    single = post(minilm, "/embed", {"inputs": "hello world"})
    assert single.status_code == 200 and single.headers["content-type"] == "application/json"
    vectors = np.asarray(single.json())
    assert vectors.shape == (1, 384)
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)
    batch = np.asarray(post(minilm, "/embed", {"inputs": ["hello world", "good night"]}).json())
    assert batch.shape == (2, 384)
    np.testing.assert_allclose(batch[0], vectors[0], atol=1e-5)


def test_same_text_same_vector_on_embed_v1_v2_openai(minilm):
    texts = ["The weather is lovely today.", "A completely different sentence about databases."]
    embed = np.asarray(post(minilm, "/embed", {"inputs": texts}).json())
    v1 = np.asarray(post(minilm, "/v1/models/minilm:predict", {"instances": texts}).json()["predictions"])
    v2_out = post(minilm, "/v2/models/minilm/infer", v2_body(texts)).json()["outputs"][0]
    v2 = np.asarray(v2_out["data"]).reshape(v2_out["shape"])
    client = OpenAI(base_url=f"{minilm.url}/openai/v1", api_key="x", max_retries=0)
    openai = np.asarray([d.embedding for d in client.embeddings.create(model="minilm", input=texts,
                                                                        encoding_format="float").data])
    for other in (v1, v2, openai):
        np.testing.assert_allclose(embed, other, atol=1e-6)


# --- truncation ------------------------------------------------------------------------------------------------------

LIMIT_MESSAGE = "limit of 256 tokens"


def _too_long_on_every_route(server, name, extra):
    """Status and error text of a too-long input on V1, V2, OpenAI, /embed."""
    v1 = post(server, f"/v1/models/{name}:predict", {"instances": [LONG], "parameters": extra})
    v2 = post(server, f"/v2/models/{name}/infer", v2_body([LONG], parameters=extra))
    openai = post(server, "/openai/v1/embeddings", {"model": name, "input": LONG, **extra})
    embed = post(server, "/embed", {"inputs": LONG, **extra})
    return {"v1": v1, "v2": v2, "openai": openai, "embed": embed}


def _assert_refused_naming_limit(responses):
    expected = {"v1": 400, "v2": 400, "openai": 400, "embed": 413}
    for route, response in responses.items():
        assert response.status_code == expected[route], (route, response.status_code, response.text)
        body = response.json()
        message = body["error"]["message"] if route == "openai" else body["error"]
        assert LIMIT_MESSAGE in message, (route, body)
    assert responses["embed"].json()["error_type"] == "validation"


def _assert_served(responses):
    for route, response in responses.items():
        assert response.status_code == 200, (route, response.text)


def test_truncation_on_by_default_off_per_request(minilm):
    _assert_served(_too_long_on_every_route(minilm, "minilm", {}))
    _assert_served(_too_long_on_every_route(minilm, "minilm", {"truncate": True}))
    _assert_refused_naming_limit(_too_long_on_every_route(minilm, "minilm", {"truncate": False}))
    # short inputs are not affected by truncate=false
    assert post(minilm, "/embed", {"inputs": "short", "truncate": False}).status_code == 200


def test_auto_truncate_false_refuses_unless_the_request_truncates(strict_minilm):
    _assert_refused_naming_limit(_too_long_on_every_route(strict_minilm, "strict", {}))
    _assert_served(_too_long_on_every_route(strict_minilm, "strict", {"truncate": True}))
    info = httpx.get(f"{strict_minilm.url}/info").json()
    assert info["auto_truncate"] is False and info["max_input_length"] == 256


def test_truncation_direction_keeps_the_first_or_the_last_tokens(minilm, minilm_dir):
    """Right truncation keeps the first 254 word pieces; left truncation the last ones."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    vocabulary = ["apple", "river", "stone", "cloud", "green", "music", "house", "table", "light", "water", "night",
                  "paper", "horse", "money", "glass", "train", "dream", "field", "smile", "storm", "sugar"]
    text = " ".join(vocabulary[(i * 7) % len(vocabulary)] + " " + vocabulary[i % 13] for i in range(200))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 400  # one token per word, so the decoded halves tokenize back to the same ids
    head = tokenizer.decode(ids[:254])
    tail = tokenizer.decode(ids[-254:])
    right, left = (np.asarray(post(minilm, "/embed", {"inputs": text, "truncation_direction": d}).json()[0])
                   for d in ("Right", "Left"))
    head_vector, tail_vector = np.asarray(post(minilm, "/embed", {"inputs": [head, tail]}).json())
    assert float(right @ head_vector) > 0.999 and float(left @ tail_vector) > 0.999
    assert float(right @ left) < 0.9999  # 1.0 if the direction were ignored
    bad = post(minilm, "/embed", {"inputs": "x", "truncation_direction": "Middle"})
    assert bad.status_code == 422 and "truncation_direction" in bad.json()["error"]


# --- rerank ----------------------------------------------------------------------------------------------------------

def test_rerank_orders_by_the_cross_encoders_logits(reranker, tiny_models):
    logits = pair_logits(tiny_models("rerank"), [(QUERY, d) for d in DOCS])[:, 0]
    expected_order = list(np.argsort(-logits, kind="stable"))
    raw = post(reranker, "/rerank", {"query": QUERY, "texts": DOCS, "raw_scores": True}).json()
    assert [r["index"] for r in raw] == expected_order
    np.testing.assert_allclose([r["score"] for r in raw], logits[expected_order], atol=1e-5)
    assert all("text" not in r for r in raw)
    scored = post(reranker, "/rerank", {"query": QUERY, "texts": DOCS, "return_text": True}).json()
    assert [r["index"] for r in scored] == expected_order
    np.testing.assert_allclose([r["score"] for r in scored], 1 / (1 + np.exp(-logits[expected_order])), atol=1e-6)
    assert [r["text"] for r in scored] == [DOCS[i] for i in expected_order]


def test_documents_rerank_route_cohere_shape(reranker, tiny_models):
    logits = pair_logits(tiny_models("rerank"), [(QUERY, d) for d in DOCS])[:, 0]
    order = list(np.argsort(-logits, kind="stable"))
    for path in ("/v1/rerank", "/openai/v1/rerank"):
        documents = [DOCS[0], {"text": DOCS[1]}, *DOCS[2:]]
        body = post(reranker, path, {"model": "reranker", "query": QUERY, "documents": documents, "top_n": 3}).json()
        assert body["model"] == "reranker" and body["usage"]["total_tokens"] > 0 and body["id"]
        assert [r["index"] for r in body["results"]] == order[:3]
        assert [r["document"]["text"] for r in body["results"]] == [DOCS[i] for i in order[:3]]
        np.testing.assert_allclose([r["relevance_score"] for r in body["results"]],
                                   1 / (1 + np.exp(-logits[order[:3]])), atol=1e-6)
        bare = post(reranker, path, {"query": QUERY, "documents": DOCS, "return_documents": False}).json()
        assert len(bare["results"]) == len(DOCS) and all("document" not in r for r in bare["results"])
    wrong = post(reranker, "/v1/rerank", {"model": "other", "query": QUERY, "documents": DOCS})
    assert wrong.status_code == 404 and "not served" in wrong.json()["error"]["message"]
    empty = post(reranker, "/v1/rerank", {"query": QUERY, "documents": []})
    assert empty.status_code == 400 and "documents" in empty.json()["error"]["message"]


def test_rerank_pairs_on_v1_and_v2(reranker, tiny_models):
    pairs = [(QUERY, d) for d in DOCS[:3]]
    logits = pair_logits(tiny_models("rerank"), pairs)[:, 0]
    instances = [{"text": q, "text_pair": d} for q, d in pairs]
    v1 = post(reranker, "/v1/models/reranker:predict", {"instances": instances}).json()["predictions"]
    np.testing.assert_allclose([p["score"] for p in v1], 1 / (1 + np.exp(-logits)), atol=1e-6)
    v2 = post(reranker, "/v2/models/reranker/infer",
              v2_body([q for q, _ in pairs], [d for _, d in pairs], {"raw_scores": True})).json()
    assert v2["outputs"][0]["name"] == "score"
    np.testing.assert_allclose(v2["outputs"][0]["data"], logits, atol=1e-5)
    mismatched = post(reranker, "/v2/models/reranker/infer", v2_body(["a", "b"], ["c"]))
    assert mismatched.status_code == 400 and "text_pair" in mismatched.json()["error"]


def test_rerank_truncation_names_the_limit(reranker):
    refused = post(reranker, "/rerank", {"query": QUERY, "texts": [LONG], "truncate": False})
    assert refused.status_code == 413 and "limit of 64 tokens" in refused.json()["error"]
    cohere = post(reranker, "/v1/rerank", {"query": QUERY, "documents": [LONG], "truncate": False})
    assert cohere.status_code == 400 and "limit of 64 tokens" in cohere.json()["error"]["message"]
    v1 = post(reranker, "/v1/models/reranker:predict",
              {"instances": [{"text": QUERY, "text_pair": LONG}], "parameters": {"truncate": False}})
    assert v1.status_code == 400 and "limit of 64 tokens" in v1.json()["error"]
    assert post(reranker, "/rerank", {"query": QUERY, "texts": [LONG]}).status_code == 200


# --- /predict, /tokenize, /decode, /info, /health ---------------------------------------------------------------------

def test_predict_single_pair_and_batch(classifier, tiny_models):
    model_dir = tiny_models("sequence_classification")
    logits = pair_logits(model_dir, [("a fine day", None), ("a fine day", "a bad day"), ("terrible", None)])
    labels = {0: "NEGATIVE", 1: "POSITIVE"}

    def expected(row, raw=False):
        scores = row if raw else np.exp(row) / np.exp(row).sum()
        return [(labels[i], scores[i]) for i in np.argsort(-scores, kind="stable")]

    def got(items):
        return [(i["label"], i["score"]) for i in items]

    single = post(classifier, "/predict", {"inputs": "a fine day"}).json()
    for (label, score), (ref_label, ref_score) in zip(got(single), expected(logits[0])):
        assert label == ref_label and score == pytest.approx(ref_score, abs=1e-6)
    pair = post(classifier, "/predict", {"inputs": ["a fine day", "a bad day"], "raw_scores": True}).json()
    for (label, score), (ref_label, ref_score) in zip(got(pair), expected(logits[1], raw=True)):
        assert label == ref_label and score == pytest.approx(ref_score, abs=1e-5)
    batch = post(classifier, "/predict", {"inputs": [["a fine day"], ["a fine day", "a bad day"], ["terrible"]]})
    assert [len(b) for b in batch.json()] == [2, 2, 2]
    alone = post(classifier, "/predict", {"inputs": ["a fine day", "a bad day"]}).json()
    assert [i["label"] for i in batch.json()[1]] == [i["label"] for i in alone]
    assert [i["score"] for i in batch.json()[1]] == pytest.approx([i["score"] for i in alone], abs=1e-6)
    bad = post(classifier, "/predict", {"inputs": [["a", "b", "c"]]})
    assert bad.status_code == 422 and bad.json()["error_type"] == "validation"


def test_tokenize_and_decode(minilm):
    tokens = post(minilm, "/tokenize", {"inputs": ["Hello Paris"]}).json()
    assert [t["text"] for t in tokens[0]] == ["[CLS]", "Hello", "Paris", "[SEP]"]  # spans of the input
    first = tokens[0]
    assert first[0]["special"] and first[-1]["special"] and first[0]["start"] is None
    assert (first[1]["start"], first[1]["stop"], first[2]["start"], first[2]["stop"]) == (0, 5, 6, 11)
    plain = post(minilm, "/tokenize", {"inputs": "Hello Paris", "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == [t["id"] for t in first[1:-1]]
    ids = [t["id"] for t in first]
    assert post(minilm, "/decode", {"ids": ids}).json() == ["hello paris"]
    assert post(minilm, "/decode", {"ids": [ids, ids[1:2]], "skip_special_tokens": False}).json() == \
        ["[CLS] hello paris [SEP]", "hello"]
    bad = post(minilm, "/decode", {"ids": [10 ** 9]})
    assert bad.status_code == 422 and "token ids run from 0" in bad.json()["error"]


def test_info_and_health(minilm, reranker):
    info = httpx.get(f"{minilm.url}/info").json()
    assert info["model_id"] == "minilm" and info["task"] == "text_embedding"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["model_dtype"] == "float32" and info["max_input_length"] == 256
    assert info["max_batch_requests"] == 32 and info["max_client_batch_size"] == 64
    assert info["max_concurrent_requests"] == 512 and info["auto_truncate"] is True
    assert "max_batch_tokens" in info
    assert httpx.get(f"{reranker.url}/info").json()["model_type"]["reranker"]["id2label"] == {"0": "LABEL_0"}
    health = httpx.get(f"{minilm.url}/health")
    assert health.status_code == 200


def test_tei_errors_have_teis_shape(minilm, reranker):
    cases = [
        (minilm, "/embed", b"{not json", 422),
        (minilm, "/embed", b"[1, 2]", 422),
        (minilm, "/embed", b'{"inputs": [1, 2]}', 422),
        (minilm, "/embed", b'{"inputs": []}', 422),
        (minilm, "/embed", b'{"inputs": "x", "prompt_name": "query"}', 422),
        (minilm, "/rerank", b'{"query": "q", "texts": ["a"]}', 400),  # an embedding model does not rerank
        (reranker, "/embed", b'{"inputs": "x"}', 400),
        (minilm, "/embed", ('{"inputs": [%s]}' % ",".join(['"x"'] * 65)).encode(), 422),
    ]
    for server, path, content, status in cases:
        response = httpx.post(f"{server.url}{path}", content=content, headers={"content-type": "application/json"})
        assert response.status_code == status, (path, content[:40], response.text)
        body = response.json()
        assert set(body) == {"error", "error_type"} and body["error_type"] == "validation", body
        assert "Traceback" not in body["error"]
    assert post(minilm, "/embed", {"inputs": "still serving"}).status_code == 200


# --- timing headers and metrics --------------------------------------------------------------------------------------

PHASES = ("tokenization", "queue", "inference", "compute", "total")


def test_timing_headers_on_every_route(minilm, reranker):
    calls = [
        (minilm, "/embed", {"inputs": ["a", "b"]}),
        (minilm, "/v1/models/minilm:predict", {"instances": ["a"]}),
        (minilm, "/v2/models/minilm/infer", v2_body(["a"])),
        (minilm, "/openai/v1/embeddings", {"model": "minilm", "input": "a"}),
        (reranker, "/rerank", {"query": "q", "texts": ["a", "b"]}),
        (reranker, "/v1/rerank", {"query": "q", "documents": ["a", "b"]}),
    ]
    for server, path, body in calls:
        response = post(server, path, body)
        assert response.status_code == 200, response.text
        ms = {p: float(response.headers[f"x-{p}-time"]) for p in PHASES}
        assert all(v >= 0 for v in ms.values()), (path, ms)
        slack = 0.002  # three decimals of rounding per header
        assert ms["total"] + slack >= ms["compute"] >= ms["queue"] + ms["inference"] + ms["tokenization"] - slack
        assert ms["total"] + slack >= ms["queue"] + ms["inference"], (path, ms)
        assert ms["inference"] > 0, (path, ms)
    metrics = httpx.get(f"{minilm.url}/metrics").text
    for phase in PHASES:
        assert f'hfserve_request_phase_seconds_count{{model_name="minilm",phase="{phase}"}}' in metrics, phase
    assert "x-total-time" not in httpx.get(f"{minilm.url}/info").headers


# --- backpressure ----------------------------------------------------------------------------------------------------

def test_overload_gets_429_with_retry_after_at_once(start_huggingface_runtime, minilm_dir):
    """Over --max_concurrent_requests: a 429 with Retry-After, answered at once (before any admitted request has
    finished: not queued behind them); health, metadata and /metrics are answered meanwhile."""
    server = start_huggingface_runtime(minilm_dir, "guarded", "--max_concurrent_requests", "2")
    name = server.model_name
    heavy = {"instances": [LONG] * 32}  # ~0.5-2 s of forward passes per request on two cores
    clients = 12

    def burst() -> tuple[list[tuple[int, float, httpx.Response]], dict[str, int]]:
        barrier = threading.Barrier(clients + 1)
        results: list[tuple[int, float, httpx.Response]] = []
        lock = threading.Lock()

        def fire():
            barrier.wait()
            started = time.monotonic()
            response = httpx.post(f"{server.url}/v1/models/{name}:predict", json=heavy, timeout=300)
            with lock:
                results.append((response.status_code, time.monotonic() - started, response))

        threads = [threading.Thread(target=fire) for _ in range(clients)]
        for thread in threads:
            thread.start()
        barrier.wait()
        # While the admitted requests run: never refused.
        probes = {path: httpx.get(f"{server.url}{path}", timeout=30).status_code
                  for path in ("/health", f"/v1/models/{name}", f"/v2/models/{name}", "/metrics")}
        for thread in threads:
            thread.join(300)
        return results, probes

    # Twelve heavy requests released together for two slots refuse at least one unless the machine stalls the
    # senders for a whole forward pass; a burst without any 429 is sent again rather than counted as a pass.
    for _ in range(3):
        results, probes = burst()
        if any(code == 429 for code, _, _ in results):
            break
    codes = sorted(code for code, _, _ in results)
    assert set(codes) == {200, 429} and 2 <= codes.count(200) < clients, codes
    assert probes == dict.fromkeys(probes, 200), probes
    refused = [(seconds, r) for code, seconds, r in results if code == 429]
    admitted = [seconds for code, seconds, _ in results if code == 200]
    for _, response in refused:
        assert response.headers["retry-after"] == "1"
        assert response.json()["error_type"] == "overloaded" and "limit of 2 concurrent" in response.json()["error"]
    slowest_refusal = max(seconds for seconds, _ in refused)
    assert slowest_refusal < min(admitted), f"a 429 took {slowest_refusal:.2f} s, the first 200 {min(admitted):.2f} s"
    openai = [post(server, "/openai/v1/embeddings", {"model": name, "input": "x"}) for _ in range(2)]
    assert all(r.status_code == 200 for r in openai)  # the slots were given back
