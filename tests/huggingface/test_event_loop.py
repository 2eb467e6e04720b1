"""Runtime 1 answers /v2/health/live within 1 s during any single huge request (security review H1, H2, H4):
tokenization and post-processing run in the service's worker threads (--tokenizer_workers), /tokenize and /decode
are capped in tokens and serialized there, and fill-mask is capped in masks and candidates.

The bodies are those of the review's reproductions, on a server taking 8 MiB bodies (64 texts of 16k words):
with truncate=false each text is tokenized whole before the length check refuses it, seconds of tokenization
that used to run on the event loop."""

import json

import pytest

from ..liveness_watch import HUGE, LIVE_S, LivenessWatch, post
from ..servers import served

big_bodies = served("minilm", "minilm", "--max_request_bytes", str(8 << 20))



@pytest.mark.parametrize("path, body, status", [
    ("/v1/models/minilm:predict", {"instances": HUGE, "parameters": {"truncate": False}}, 400),
    ("/v1/models/minilm:predict", {"instances": HUGE}, 200),
    ("/v2/models/minilm/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [64], "data": HUGE}],
                                 "parameters": {"truncate": False}}, 400),
    ("/embed", {"inputs": HUGE, "truncate": False}, 413),
    ("/embed", {"inputs": HUGE}, 200),
    ("/openai/v1/embeddings", {"model": "minilm", "input": HUGE}, 200),
], ids=["v1-untruncated", "v1", "v2-untruncated", "tei-untruncated", "tei", "openai"])
def test_liveness_answers_during_a_huge_embedding_request(big_bodies, path, body, status):
    content = json.dumps(body).encode()  # before watching: the test's own encoding is not the server's stall
    with LivenessWatch(big_bodies.url) as watch:
        response = post(big_bodies.url, path, content)
    assert response.status_code == status, response.text[:300]
    if status != 200:
        assert "256" in response.text  # names the model's limit
    watch.assert_live_within(LIVE_S)


def test_liveness_answers_during_big_tokenize_and_decode(big_bodies):
    with LivenessWatch(big_bodies.url) as watch:
        dots = post(big_bodies.url, "/tokenize", {"inputs": "." * (1 << 20)})
        fits = post(big_bodies.url, "/tokenize", {"inputs": ["word " * 8000, "word " * 8000]})
        over = post(big_bodies.url, "/decode", {"ids": [[2773] * 300] * 64})
        decoded = post(big_bodies.url, "/decode", {"ids": [[2773] * 250] * 64})
    assert dots.status_code == 413 and "16384" in dots.json()["error"], dots.text[:300]
    assert fits.status_code == 200 and fits.headers["content-type"] == "application/json"
    tokens = fits.json()
    assert [len(t) for t in tokens] == [8002, 8002]
    assert tokens[0][1] == {"id": 2773, "text": "word", "special": False, "start": 0, "stop": 4}
    assert tokens[0][0]["special"] is True and tokens[0][0]["start"] is None
    assert over.status_code == 413, over.text[:300]
    assert "16384" in over.json()["error"] and "--max_decode_tokens" in over.json()["error"]
    assert decoded.status_code == 200 and decoded.json()[0] == " ".join(["word"] * 250)
    watch.assert_live_within(LIVE_S)


def test_liveness_answers_during_the_fill_mask_reproduction(filler):
    """The review's candidate explosion (64 texts of 60 masks, top_k 100) is refused naming the cap, and the
    largest request the caps allow (64 x 8 masks x top_k 8 = 4096 candidates) is served without a stall."""
    url, model = filler.url, filler.model_name
    with LivenessWatch(url) as watch:
        explosion = post(url, f"/v1/models/{model}:predict",
                         {"instances": [" ".join(["[MASK]"] * 60)] * 64, "parameters": {"top_k": 100}})
        too_many = post(url, f"/v1/models/{model}:predict",
                        {"instances": ["the [MASK] sat " * 8] * 64, "parameters": {"top_k": 9}})
        largest = post(url, f"/v1/models/{model}:predict",
                       {"instances": ["the [MASK] sat " * 8] * 64, "parameters": {"top_k": 8}})
    assert explosion.status_code == 400 and "--max_masks" in explosion.json()["error"], explosion.text[:300]
    assert too_many.status_code == 400 and "4096" in too_many.json()["error"], too_many.text[:300]
    assert largest.status_code == 200, largest.text[:300]
    predictions = largest.json()["predictions"]
    assert len(predictions) == 64 and [len(m) for m in predictions[0]] == [8] * 8
    watch.assert_live_within(LIVE_S)
