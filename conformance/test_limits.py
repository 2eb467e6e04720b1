"""Limits: over-length text is truncated (not rejected); item count and body size limits hold
(--max_request_items, default 64; --max_request_bytes, default 1 MiB), even for chunked bodies."""

import json

import pytest

from conformance import protocol as P

pytestmark = pytest.mark.limits

MAX_ITEMS = 64
MAX_BYTES = 1 << 20

WORDS = ("serving transformer models needs careful batching tokenization and truncation of long "
         "inputs so that no request fails because a document is longer than the model accepts ").split()


def _long_text(n_words: int, seed: int = 0) -> str:
    return " ".join(WORDS[(i * 7 + seed) % len(WORDS)] for i in range(n_words))


def test_over_length_text_is_truncated(minilm):
    """5000 words (far past the model's window) are served, and only the first window counts."""
    head = _long_text(1500)
    longer = head + " " + _long_text(3500, seed=3)
    with minilm.http() as http:
        emb = P.v1_embeddings(P.v1_predict(http, minilm.model_name, [head, longer]))
    P.assert_embeddings(emb, 2, minilm.embedding_dim)
    P.assert_close(emb[0], emb[1], P.ATOL, "text vs the same text with more appended past the window")


def test_over_length_text_v2_and_openai(minilm):
    text = _long_text(5000)
    with minilm.http() as http:
        out = P.v2_single_output(P.v2_infer(http, minilm.model_name, [text]))
        oai = P.ok_json(P.openai_embeddings(http, minilm.model_name, [text]))
    P.assert_embeddings(out, 1, minilm.embedding_dim)
    P.assert_embeddings(P.openai_vectors(oai), 1, minilm.embedding_dim)


def test_item_limit_exactly_allowed(minilm):
    texts = [f"item number {i}" for i in range(MAX_ITEMS)]
    with minilm.http() as http:
        emb = P.v1_embeddings(P.v1_predict(http, minilm.model_name, texts))
        v2 = P.v2_single_output(P.v2_infer(http, minilm.model_name, texts))
    P.assert_embeddings(emb, MAX_ITEMS, minilm.embedding_dim)
    assert v2.shape[0] == MAX_ITEMS


@pytest.mark.parametrize("protocol", ["v1", "v2", "openai"])
def test_item_limit_exceeded(minilm, protocol):
    texts = [f"item number {i}" for i in range(MAX_ITEMS + 1)]
    with minilm.http() as http:
        if protocol == "v1":
            r = P.v1_predict(http, minilm.model_name, texts)
        elif protocol == "v2":
            r = P.v2_infer(http, minilm.model_name, texts)
        else:
            r = P.openai_embeddings(http, minilm.model_name, texts)
        body = P.assert_json_error(r)
        assert str(MAX_ITEMS) in body["error"] or "item" in body["error"].lower() or r.status_code == 413, body
        P.v1_embeddings(P.v1_predict(http, minilm.model_name, ["after the limit"]))


def test_body_just_under_the_limit(minilm):
    texts = [_long_text(3000, seed=i)[:16_500] for i in range(60)]
    body = json.dumps(P.v1_body(texts)).encode()
    assert MAX_BYTES - 64 * 1024 < len(body) < MAX_BYTES, len(body)
    with minilm.http() as http:
        r = http.post(f"/v1/models/{minilm.model_name}:predict", content=body,
                      headers={"Content-Type": "application/json"})
    P.assert_embeddings(P.v1_embeddings(r), 60, minilm.embedding_dim)


def test_body_over_the_limit(minilm):
    texts = [_long_text(3000, seed=i)[:18_000] for i in range(60)]
    body = json.dumps(P.v1_body(texts)).encode()
    assert len(body) > MAX_BYTES
    with minilm.http() as http:
        r = http.post(f"/v1/models/{minilm.model_name}:predict", content=body,
                      headers={"Content-Type": "application/json"})
        P.assert_json_error(r)
        assert r.status_code == 413, r.status_code


def test_chunked_body_over_the_limit(minilm):
    """No Content-Length to trust: the limit must count the bytes actually received."""
    payload = json.dumps(P.v1_body(["lorem ipsum dolor " * 1000] * 60)).encode()
    assert len(payload) > MAX_BYTES

    def chunks():
        for i in range(0, len(payload), 64 * 1024):
            yield payload[i:i + 64 * 1024]

    with minilm.http() as http:
        r = http.post(f"/v1/models/{minilm.model_name}:predict", content=chunks(),
                      headers={"Content-Type": "application/json"})
        P.assert_json_error(r)
        assert r.status_code == 413, r.status_code
        P.v1_embeddings(P.v1_predict(http, minilm.model_name, ["after a chunked flood"]))
