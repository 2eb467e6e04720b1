"""Hugging Face's protocols on the kserve-huggingface runtime: huggingface_hub.InferenceClient, unchanged, method by
method against `POST /`, TGI's /generate and /generate_stream shapes, and generation's output rules (no special
tokens in text, an empty prompt is a 4xx on every generation route)."""

import json

import httpx
import numpy as np
import pytest
from huggingface_hub.errors import HfHubHTTPError, ValidationError
from openai import OpenAI
from transformers import GenerationConfig

from tests import grpc_tool

RELATED = ("A man is playing a guitar.", "Someone plays the guitar on stage.")
UNRELATED = "The stock market fell sharply on Monday."


# minilm, classifier, tagger, filler, writer: tests/huggingface/conftest.py


def v1(runtime, instances, **extra):
    response = httpx.post(f"{runtime.url}/v1/models/{runtime.model_name}:predict",
                          json={"instances": instances, **extra}, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def post(runtime, path, body, timeout=120):
    return httpx.post(f"{runtime.url}{path}", json=body, timeout=timeout)


# --- encoder tasks -------------------------------------------------------------------------------


def test_feature_extraction_equals_v1(minilm, inference_client):
    client = inference_client(minilm.url)
    single = client.feature_extraction(RELATED[0])
    assert single.shape == (384,) and single.dtype == np.float32
    batch = client.feature_extraction([*RELATED, UNRELATED])
    assert batch.shape == (3, 384)
    reference = np.asarray(v1(minilm, [*RELATED, UNRELATED]))
    np.testing.assert_allclose(batch, reference, atol=1e-5)
    np.testing.assert_allclose(single, reference[0], atol=1e-5)
    raw = client.feature_extraction(RELATED[0], normalize=False)
    assert abs(np.linalg.norm(raw) - 1) > 1e-3
    np.testing.assert_allclose(raw / np.linalg.norm(raw), reference[0], atol=1e-5)


def test_sentence_similarity_is_cosine_of_the_embeddings(minilm, inference_client):
    scores = inference_client(minilm.url).sentence_similarity(RELATED[0], [RELATED[1], UNRELATED])
    vectors = np.asarray(v1(minilm, [*RELATED, UNRELATED]))
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-5)
    assert scores[0] > scores[1] + 0.3


def test_feature_extraction_without_truncation_names_the_limit(minilm, inference_client):
    client = inference_client(minilm.url)
    long_text = "word " * 400
    assert client.feature_extraction(long_text, truncate=True).shape == (384,)
    with pytest.raises(HfHubHTTPError) as error:
        client.feature_extraction(long_text, truncate=False)
    assert error.value.response.status_code == 413
    assert "256" in error.value.response.json()["error"]
    assert client.feature_extraction("short enough", truncate=False).shape == (384,)


def test_text_classification_all_labels_and_functions(classifier, inference_client):
    client = inference_client(classifier.url)
    text = "I love this movie"
    ranked = client.text_classification(text)
    assert {r.label for r in ranked} == {"NEGATIVE", "POSITIVE"}
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert sum(r.score for r in ranked) == pytest.approx(1.0, abs=1e-6)
    reference = v1(classifier, [text])[0]
    assert (ranked[0].label, ranked[0].score) == (reference["label"], pytest.approx(reference["score"], abs=1e-6))
    assert len(client.text_classification(text, top_k=1)) == 1
    logits = {r.label: r.score for r in client.text_classification(text, function_to_apply="none")}
    sigmoid = {r.label: r.score for r in client.text_classification(text, function_to_apply="sigmoid")}
    for label, logit in logits.items():
        assert sigmoid[label] == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
    pair = post(classifier, "/", {"inputs": {"text": "I love this movie", "text_pair": "it was great"}})
    assert pair.status_code == 200 and [r["label"] for r in pair.json()[0]] != []
    assert sum(r["score"] for r in pair.json()[0]) == pytest.approx(1.0, abs=1e-6)


def test_token_classification_equals_v1(tagger, inference_client):
    client = inference_client(tagger.url)
    text = "Alice moved from Paris to Berlin last year"
    entities = client.token_classification(text)
    assert [(e.entity_group, e.start, e.end, e.word) for e in entities] == [
        (e["entity_group"], e["start"], e["end"], e["word"]) for e in v1(tagger, [text])[0]]
    if entities:
        dropped = entities[0].entity_group
        assert all(e.entity_group != dropped for e in client.token_classification(text, ignore_labels=[dropped]))
    with pytest.raises(HfHubHTTPError) as error:
        client.token_classification(text, aggregation_strategy="first")
    assert error.value.response.status_code == 422 and "simple" in error.value.response.json()["error"]


def test_fill_mask_equals_v1(filler, inference_client):
    client = inference_client(filler.url)
    candidates = client.fill_mask("the cat sat on the [MASK]", top_k=3)
    reference = v1(filler, ["the cat sat on the [MASK]"], parameters={"top_k": 3})[0]
    assert [(c.token, c.token_str, c.sequence) for c in candidates] == [
        (r["token"], r["token_str"], r["sequence"]) for r in reference]
    with pytest.raises(HfHubHTTPError) as error:
        client.fill_mask("no mask here")
    assert error.value.response.status_code == 422 and "[MASK]" in error.value.response.json()["error"]


def test_task_route_errors_are_json(classifier):
    assert post(classifier, "/", {"inputs": 5}).status_code == 422
    assert post(classifier, "/", {"inputs": "x", "parameters": {"bogus": 1}}).json()["error"].startswith("unknown")
    not_json = httpx.post(f"{classifier.url}/", content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    wrong_task = post(classifier, "/generate", {"inputs": "x"})
    assert wrong_task.status_code == 404 and "sequence_classification" in wrong_task.json()["error"]
    assert post(classifier, "/", {"inputs": "x", "stream": True}).status_code == 422
    assert post(classifier, "/", {"inputs": "still serving"}).status_code == 200


# --- generation ----------------------------------------------------------------------------------


def test_text_generation_client_whole_details_and_stream(writer, inference_client):
    client = inference_client(writer.url)
    text = client.text_generation("the cat", max_new_tokens=8)
    assert text == v1(writer, ["the cat"], parameters={"max_new_tokens": 8})[0]["generated_text"]
    detailed = client.text_generation("the cat", max_new_tokens=8, details=True)
    assert detailed.generated_text == text
    assert detailed.details.generated_tokens == len(detailed.details.tokens) <= 8
    assert "".join(t.text for t in detailed.details.tokens) == text
    assert detailed.details.finish_reason in ("length", "eos_token")
    assert all(t.logprob <= 0 for t in detailed.details.tokens)
    assert "".join(client.text_generation("the cat", max_new_tokens=8, stream=True)) == text
    events = list(client.text_generation("the cat", max_new_tokens=8, stream=True, details=True))
    assert [e.token.id for e in events] == [t.id for t in detailed.details.tokens]
    assert events[-1].generated_text == text and all(e.generated_text is None for e in events[:-1])
    assert events[-1].details.finish_reason == detailed.details.finish_reason
    assert events[-1].details.input_length > 0


def test_tgi_generate_parameters(writer):
    whole = post(writer, "/generate", {"inputs": "the cat", "parameters": {"max_new_tokens": 12}}).json()
    assert set(whole) == {"generated_text"}
    full = post(writer, "/generate", {"inputs": "the cat", "parameters": {"max_new_tokens": 12,
                                                                           "return_full_text": True}}).json()
    assert full["generated_text"] == "the cat" + whole["generated_text"]
    words = whole["generated_text"].split()
    assert words, "the tiny model generated nothing to test stop sequences with"
    stopped = post(writer, "/generate", {"inputs": "the cat", "parameters": {
        "max_new_tokens": 12, "stop": [words[0]], "details": True}}).json()
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    assert stopped["generated_text"].endswith(words[0]) and whole["generated_text"].startswith(stopped["generated_text"])
    sampled = {"max_new_tokens": 12, "do_sample": True, "top_k": 50, "temperature": 1.5, "details": True}
    first = post(writer, "/generate", {"inputs": "the cat", "parameters": sampled}).json()
    assert isinstance(first["details"]["seed"], int)
    again = post(writer, "/generate", {"inputs": "the cat", "parameters": {**sampled,
                                                                            "seed": first["details"]["seed"]}}).json()
    assert again["generated_text"] == first["generated_text"]
    as_list = post(writer, "/", {"inputs": "the cat", "parameters": {"max_new_tokens": 12}}).json()
    assert as_list == [whole]


def test_tgi_parameter_errors(writer, inference_client):
    for parameters, word in (({"temperature": 0}, "temperature"), ({"best_of": 2}, "best_of"),
                             ({"max_new_tokens": 0}, "max_new_tokens"), ({"sampling": True}, "unknown")):
        response = post(writer, "/generate", {"inputs": "the cat", "parameters": parameters})
        assert response.status_code == 422, parameters
        assert response.json()["error_type"] == "validation" and word in response.json()["error"]
    with pytest.raises(ValidationError):
        inference_client(writer.url).text_generation("the cat", watermark=True)


def test_generate_stream_is_tgi_server_sent_events(writer):
    body = {"inputs": "the cat", "parameters": {"max_new_tokens": 6, "details": True}}
    with httpx.stream("POST", f"{writer.url}/generate_stream", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    blocks = [b for b in raw.split("\n\n") if b]
    assert all(b.startswith("data:") for b in blocks), raw
    events = [json.loads(b[len("data:"):]) for b in blocks]
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert set(event["token"]) == {"id", "text", "logprob", "special"}
    assert events[-1]["generated_text"] == "".join(e["token"]["text"] for e in events)
    assert events[-1]["details"]["generated_tokens"] == len(events)
    same_via_root = post(writer, "/", {**body, "stream": True}).text
    assert [json.loads(b[5:])["token"]["id"] for b in same_via_root.split("\n\n") if b] == [
        e["token"]["id"] for e in events]


def test_special_tokens_never_reach_the_text(writer, tiny_models):
    """Sampling hot until the tiny model emits its end-of-sequence token: the token is reported as special with
    no text, and none of the routes' texts contain it. TGI's routes filter by top-k only when asked; OpenAI's
    leave it to generate(), which takes transformers' default of 50 for a checkpoint that sets none (this one).
    Naming 50 on /generate makes both routes sample the same distribution."""
    eos = "<|endoftext|>"
    assert GenerationConfig.from_pretrained(tiny_models("text_generation")).top_k is None
    for seed in range(50):
        parameters = {"max_new_tokens": 60, "temperature": 2.0, "top_k": 50, "seed": seed, "details": True}
        answer = post(writer, "/generate", {"inputs": "the cat", "parameters": parameters}).json()
        special = [t for t in answer["details"]["tokens"] if t["special"]]
        if special:
            break
    else:
        pytest.fail("no seed made the tiny model generate a special token")
    assert all(t["text"] == "" for t in special)
    assert answer["details"]["finish_reason"] == "eos_token"
    assert eos not in answer["generated_text"] and answer["generated_text"]
    streamed = post(writer, "/generate_stream", {"inputs": "the cat", "parameters": parameters}).text
    assert eos not in streamed
    completion = OpenAI(base_url=f"{writer.url}/openai/v1", api_key="unused").completions.create(
        model="writer", prompt="the cat", max_tokens=60, temperature=2.0, seed=seed)
    assert completion.choices[0].text == answer["generated_text"], (seed, parameters)
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_an_empty_prompt_is_a_4xx_on_every_generation_route(writer, prompt):
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [prompt]}]}
    calls = {
        "POST /": ("/", {"inputs": prompt}),
        "POST / stream": ("/", {"inputs": prompt, "stream": True}),
        "/generate": ("/generate", {"inputs": prompt}),
        "/generate_stream": ("/generate_stream", {"inputs": prompt}),
        "V1": ("/v1/models/writer:predict", {"instances": [prompt]}),
        "V2": ("/v2/models/writer/infer", v2),
        "completions": ("/openai/v1/completions", {"model": "writer", "prompt": prompt}),
        "completions stream": ("/openai/v1/completions", {"model": "writer", "prompt": prompt, "stream": True}),
        "chat": ("/openai/v1/chat/completions", {"model": "writer", "messages": [{"role": "user", "content": prompt}]}),
        "chat stream": ("/openai/v1/chat/completions", {"model": "writer", "stream": True,
                                                        "messages": [{"role": "user", "content": prompt}]}),
    }
    for name, (path, body) in calls.items():
        response = post(writer, path, body)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json"), name
        assert "empty" in json.dumps(response.json()), (name, response.text)
    refused = grpc_tool.call("infer", writer.grpc_target, "writer", json.dumps([prompt]))
    assert not refused["ok"] and "INVALID_ARGUMENT" in refused["code"] and "empty" in refused["message"]
    assert post(writer, "/generate", {"inputs": "the cat"}).status_code == 200
