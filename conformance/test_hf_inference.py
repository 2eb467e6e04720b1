"""Hugging Face's protocols, driven by the standard `huggingface_hub.InferenceClient(base_url=...)`: the Inference
API task route `POST /` on both runtimes, TGI's /generate and /generate_stream on generative models."""

import json

import huggingface_hub  # pinned in requirements/dev.txt: a missing client fails, it does not skip
import huggingface_hub.constants as hub_constants
import pytest

from conformance import protocol as P

pytestmark = pytest.mark.hf_inference

MASKED = "the weather in [MASK] is rainy today."
TEXT = "Alice and Bob met in Tokyo last summer."


@pytest.fixture
def client(monkeypatch):
    """client(deployment) -> InferenceClient. With HF_HUB_OFFLINE set (CI, air-gapped machines) huggingface_hub
    refuses every request, loopback included; a client given a URL talks to that URL only, so the guard is lifted
    for the test."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    return lambda dep: huggingface_hub.InferenceClient(base_url=dep.http_url, timeout=120)


def test_feature_extraction_equals_v1(minilm, client):
    vectors = client(minilm).feature_extraction(P.TEXTS)
    with minilm.http() as http:
        reference = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
    P.assert_close(vectors, reference, P.ATOL, "InferenceClient.feature_extraction vs V1")
    single = client(minilm).feature_extraction(P.TEXTS[0])
    assert single.ndim == 1
    P.assert_close(single, reference[0], P.ATOL, "single text")


def test_sentence_similarity(minilm, client):
    scores = client(minilm).sentence_similarity(P.TEXTS[0], P.TEXTS[1:])
    assert len(scores) == len(P.TEXTS) - 1
    assert scores[0] > scores[1] + 0.2, scores  # the kitten sentence is closer than the stock market one


def test_task_route_validation_error(minilm):
    with minilm.http() as http:
        response = http.post("/", json={"inputs": {"source_sentence": "only a source"}})
    P.assert_json_error(response)
    assert response.status_code == 422


@pytest.mark.parity
def test_feature_extraction_same_on_both_runtimes(pair, client):
    a, b = pair
    P.assert_close(client(a).feature_extraction(P.TEXTS), client(b).feature_extraction(P.TEXTS), P.ATOL,
                   "feature_extraction across runtimes")


@pytest.mark.parity
def test_task_methods_same_on_both_runtimes(tiny_pair, client):
    a, b = tiny_pair
    kind = a.task
    if kind == "sequence_classification":
        call = lambda dep: [(r.label, r.score) for r in client(dep).text_classification(TEXT)]  # noqa: E731
    elif kind == "token_classification":
        call = lambda dep: [(e.entity_group, e.start, e.end, e.score) for e in client(dep).token_classification(TEXT)]  # noqa: E731
    elif kind == "fill_mask":
        call = lambda dep: [(c.token, c.sequence, c.score) for c in client(dep).fill_mask(MASKED, top_k=3)]  # noqa: E731
    else:
        pytest.fail(f"no InferenceClient method listed for {kind}")
    left, right = call(a), call(b)
    assert len(left) == len(right) and (kind == "token_classification" or left)
    for x, y in zip(left, right):
        assert x[:-1] == y[:-1], (x, y)
        assert abs(x[-1] - y[-1]) <= P.ATOL, (x, y)


def test_text_generation_whole_stream_and_details(generative, client):
    c = client(generative)
    text = c.text_generation("the cat", max_new_tokens=6)
    assert "".join(c.text_generation("the cat", max_new_tokens=6, stream=True)) == text
    detailed = c.text_generation("the cat", max_new_tokens=6, details=True)
    assert detailed.generated_text == text and detailed.details.generated_tokens == len(detailed.details.tokens)
    last = list(c.text_generation("the cat", max_new_tokens=6, stream=True, details=True))[-1]
    assert last.generated_text == text and last.details.finish_reason == detailed.details.finish_reason


def test_generate_and_generate_stream_shapes(generative):
    body = {"inputs": "the cat", "parameters": {"max_new_tokens": 5, "details": True}}
    with generative.http() as http:
        whole = P.ok_json(http.post("/generate", json=body))
        stream = http.post("/generate_stream", json=body)
    assert set(whole["details"]) >= {"finish_reason", "generated_tokens", "seed", "prefill", "tokens"}
    assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(b[len("data:"):]) for b in stream.text.split("\n\n") if b]
    assert [e["token"]["id"] for e in events] == [t["id"] for t in whole["details"]["tokens"]]
    assert events[-1]["generated_text"] == whole["generated_text"]


@pytest.mark.bad_input
def test_empty_prompt_is_4xx_on_every_generation_route(generative):
    name = generative.model_name
    requests = [("/", {"inputs": " "}), ("/", {"inputs": "", "stream": True}), ("/generate", {"inputs": ""}),
                ("/generate_stream", {"inputs": " \n"}), (f"/v1/models/{name}:predict", {"instances": [""]}),
                ("/openai/v1/completions", {"model": name, "prompt": " "}),
                ("/openai/v1/completions", {"model": name, "prompt": "", "stream": True}),
                ("/openai/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": " "}]})]
    with generative.http() as http:
        for path, body in requests:
            P.assert_json_error(http.post(path, json=body))
        P.ok_json(http.post("/generate", json={"inputs": "the cat"}))

