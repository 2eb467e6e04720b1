"""Every task the kserve-huggingface runtime serves, on tiny checkpoints built locally (random weights, real code)."""

import json

import httpx
import pytest
from openai import OpenAI

from devkit.processes import ServerProcess, free_port, huggingface_command
from tests import grpc_tool


def predict(runtime, instances, **extra):
    return httpx.post(f"{runtime.url}/v1/models/{runtime.model_name}:predict",
                      json={"instances": instances, **extra}, timeout=120)


# classifier, tagger, filler, writer, translator: tests/huggingface/conftest.py


def test_sequence_classification_labels_and_probabilities(classifier):
    plain = predict(classifier, ["the movie was great", "terrible food"]).json()["predictions"]
    assert all(p["label"] in ("NEGATIVE", "POSITIVE") and 0.5 <= p["score"] <= 1 for p in plain)
    assert "probabilities" not in plain[0]
    detailed = predict(classifier, ["the movie was great"], parameters={"return_probabilities": True})
    probabilities = detailed.json()["predictions"][0]["probabilities"]
    assert set(probabilities) == {"NEGATIVE", "POSITIVE"}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert max(probabilities.values()) == pytest.approx(plain[0]["score"], abs=1e-6)


def test_sequence_classification_v2_tensors(classifier):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["good", "bad"]}],
            "parameters": {"return_probabilities": True}}
    outputs = {o["name"]: o for o in httpx.post(f"{classifier.url}/v2/models/sentiment/infer", json=body).json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [2]
    assert outputs["score"]["datatype"] == "FP32"
    assert outputs["probabilities"]["shape"] == [2, 2]


def test_token_classification_entities_point_into_the_text(tagger):
    text = "Alice moved from Paris to Berlin last year"
    entities = predict(tagger, [text]).json()["predictions"][0]
    assert isinstance(entities, list) and entities  # random tiny weights tag most words: none means a bug
    for entity in entities:
        assert entity["entity_group"] in ("PER", "LOC")
        assert text[entity["start"]:entity["end"]] == entity["word"]
        assert 0 < entity["score"] <= 1
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
    output = httpx.post(f"{tagger.url}/v2/models/ner/infer", json=body).json()["outputs"][0]
    assert output["name"] == "entities" and json.loads(output["data"][0]) == entities


def test_fill_mask_top_k_candidates(filler):
    candidates = predict(filler, ["the cat sat on the [MASK]"], parameters={"top_k": 3}).json()["predictions"][0]
    assert len(candidates) == 3
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    for candidate in candidates:
        assert candidate["sequence"].startswith("the cat sat on the")
        assert isinstance(candidate["token"], int) and candidate["token_str"]
    two_masks = predict(filler, ["[MASK] cat sat on the [MASK]"]).json()["predictions"][0]
    assert len(two_masks) == 2 and len(two_masks[0]) == 5


def test_fill_mask_without_a_mask_is_a_clear_400(filler):
    response = predict(filler, ["no mask here"])
    assert response.status_code == 400 and "[MASK]" in response.json()["error"]
    assert predict(filler, ["a [MASK] here"]).status_code == 200


def test_text_generation_is_greedy_and_deterministic_by_default(writer):
    first = predict(writer, ["the cat"], parameters={"max_new_tokens": 8}).json()["predictions"][0]
    second = predict(writer, ["the cat"], parameters={"max_new_tokens": 8}).json()["predictions"][0]
    assert first == second and first["finish_reason"] in ("stop", "length")
    assert isinstance(first["generated_text"], str) and first["generated_text"]


def test_text_generation_v2_and_grpc(writer):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["the dog"]}]}
    rest = httpx.post(f"{writer.url}/v2/models/writer/infer", json=body, timeout=60).json()["outputs"][0]
    assert rest["name"] == "generated_text" and rest["datatype"] == "BYTES"
    grpc = grpc_tool.call("infer", writer.grpc_target, "writer", json.dumps(["the dog"]))
    assert grpc["ok"] and grpc["outputs"]["generated_text"] == rest["data"]


def test_openai_completions_chat_and_streaming(writer):
    client = OpenAI(base_url=f"{writer.url}/openai/v1", api_key="unused")
    completion = client.completions.create(model="writer", prompt="the cat", max_tokens=6)
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens <= 6
    streamed = client.completions.create(model="writer", prompt="the cat", max_tokens=6, stream=True)
    assert "".join(chunk.choices[0].text for chunk in streamed) == completion.choices[0].text
    chat = client.chat.completions.create(model="writer", messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=6)
    assert chat.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model="writer", messages=[{"role": "user", "content": "hello"}],
                                                 max_tokens=6, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == chat.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_stop_sequences_end_the_text(writer):
    whole = predict(writer, ["the cat"], parameters={"max_new_tokens": 12}).json()["predictions"][0]["generated_text"]
    words = whole.split()
    if len(words) < 2:
        pytest.fail(f"the tiny model generated too little to test stop sequences: {whole!r}")
    stop = words[1]
    cut = predict(writer, ["the cat"], parameters={"max_new_tokens": 12, "stop": [stop]}).json()["predictions"][0]
    assert stop not in cut["generated_text"] and cut["finish_reason"] == "stop"
    assert whole.startswith(cut["generated_text"])


def test_generation_option_errors(writer):
    for bad in ({"temperature": -1}, {"max_new_tokens": 0}):
        response = predict(writer, ["x"], parameters=bad)
        assert response.status_code == 400 and next(iter(bad)) in response.json()["error"], response.text
    response = httpx.post(f"{writer.url}/openai/v1/completions", json={"model": "writer", "prompt": "x", "n": 3})
    assert response.status_code == 400 and response.json()["error"]
    parts = [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {"url": "x"}}]
    chat = httpx.post(f"{writer.url}/openai/v1/chat/completions", timeout=60, json={
        "model": "writer", "max_tokens": 2, "messages": [{"role": "user", "content": parts}]})
    assert chat.status_code == 200, chat.text  # text parts are read, other parts ignored
    for content in ([{"type": "text", "text": 5}], [{"text": "no type"}], [3]):  # security review L1: was a 500
        bad = httpx.post(f"{writer.url}/openai/v1/chat/completions", timeout=60, json={
            "model": "writer", "messages": [{"role": "user", "content": content}]})
        assert bad.status_code == 400 and bad.json()["error"]["message"], (content, bad.text)


def test_text2text_generation(translator):
    first = predict(translator, ["translate: the cat"], parameters={"max_new_tokens": 5}).json()["predictions"][0]
    assert isinstance(first["generated_text"], str) and first["generated_text"]
    client = OpenAI(base_url=f"{translator.url}/openai/v1", api_key="unused")
    completion = client.completions.create(model="t5", prompt="translate: the cat", max_tokens=5)
    assert completion.choices[0].text == first["generated_text"]


def test_unknown_architecture_without_task_exits_with_a_clear_message(tmp_path, tiny_models):
    model_dir = tmp_path / "odd"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"architectures": ["SomethingNew"]}))
    port = free_port()
    server = ServerProcess(huggingface_command(model_dir, "odd", port, free_port()), tmp_path / "odd.log")
    with server:
        assert server.process.wait(60) != 0
    assert "pass --task" in server.log_tail()
