"""KServe V1 REST protocol: model metadata and :predict for the packaged MiniLM."""

import pytest

from conformance import protocol as P

pytestmark = pytest.mark.v1


def test_model_metadata(minilm):
    with minilm.http() as http:
        body = P.ok_json(http.get(f"/v1/models/{minilm.model_name}"))
    assert body.get("name") == minilm.model_name, body
    assert body.get("ready") is True, body


def test_predict_strings(minilm):
    with minilm.http() as http:
        emb = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
    P.assert_embeddings(emb, len(P.TEXTS), minilm.embedding_dim)


def test_predict_objects_with_text(minilm):
    """Instances may be objects carrying "text"; the answer equals the plain-string form."""
    with minilm.http() as http:
        plain = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS[:2]))
        objs = P.v1_embeddings(P.v1_predict(http, minilm.model_name, [{"text": t} for t in P.TEXTS[:2]]))
    P.assert_close(objs, plain, P.ATOL, "objects vs strings")


def test_single_instance(minilm):
    with minilm.http() as http:
        emb = P.v1_embeddings(P.v1_predict(http, minilm.model_name, ["hello"]))
    P.assert_embeddings(emb, 1, minilm.embedding_dim)


def test_deterministic_and_order_preserving(minilm):
    """The same text gives the same vector, alone or in a batch, in whatever position."""
    with minilm.http() as http:
        forward = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
        backward = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS[::-1]))
        alone = P.v1_embeddings(P.v1_predict(http, minilm.model_name, [P.TEXTS[2]]))
    P.assert_close(forward, backward[::-1], P.ATOL, "reversed batch")
    P.assert_close(forward[2:3], alone, P.ATOL, "batch vs alone")


def test_semantics(minilm):
    """A real sentence-embedding model: paraphrases are closer than unrelated sentences."""
    with minilm.http() as http:
        cat, kitten, market, _ = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
    assert P.cosine(cat, kitten) > P.cosine(cat, market) + 0.2, (P.cosine(cat, kitten), P.cosine(cat, market))
