"""The kserve-huggingface runtime serving the packaged all-MiniLM-L6-v2 over every protocol, as a client sees it."""

import concurrent.futures
import json
import re

import httpx
import numpy as np
import pytest
from openai import OpenAI

from tests import grpc_tool

MODEL = "minilm"
RELATED = ("A man is playing a guitar.", "Someone plays the guitar on stage.")
UNRELATED = "The stock market fell sharply on Monday."


@pytest.fixture(scope="module")
def runtime(start_huggingface_runtime, minilm_dir):
    return start_huggingface_runtime(minilm_dir, MODEL, "--max_request_items", "40", "--max_request_bytes", "200000")


def v1(runtime, instances, **extra):
    return httpx.post(f"{runtime.url}/v1/models/{MODEL}:predict", json={"instances": instances, **extra}, timeout=60)


def cosine(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_v1_embeddings_capture_meaning(runtime):
    response = v1(runtime, [*RELATED, UNRELATED])
    assert response.status_code == 200
    vectors = response.json()["predictions"]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)  # MiniLM declares a Normalize module
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3


def test_v1_model_status_and_object_instances(runtime):
    status = httpx.get(f"{runtime.url}/v1/models/{MODEL}").json()
    assert status == {"name": MODEL, "ready": True}
    as_objects = v1(runtime, [{"text": RELATED[0]}]).json()["predictions"][0]
    as_strings = v1(runtime, [RELATED[0]]).json()["predictions"][0]
    np.testing.assert_allclose(as_objects, as_strings, atol=1e-5)


def test_normalize_parameter_turns_normalisation_off(runtime):
    raw = np.asarray(v1(runtime, [RELATED[0]], parameters={"normalize": False}).json()["predictions"][0])
    normalised = np.asarray(v1(runtime, [RELATED[0]]).json()["predictions"][0])
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3
    np.testing.assert_allclose(raw / np.linalg.norm(raw), normalised, atol=1e-6)  # the same vector, unscaled


def test_v2_rest_infer_and_metadata(runtime):
    metadata = httpx.get(f"{runtime.url}/v2/models/{MODEL}").json()
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["outputs"][0]["name"] == "embedding"
    body = {"id": "req-7", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": list(RELATED)}]}
    response = httpx.post(f"{runtime.url}/v2/models/{MODEL}/infer", json=body, timeout=60)
    assert response.status_code == 200
    payload = response.json()
    assert payload["id"] == "req-7"
    output = payload["outputs"][0]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [2, 384])
    v1_vectors = v1(runtime, list(RELATED)).json()["predictions"]
    np.testing.assert_allclose(np.reshape(output["data"], (2, 384)), v1_vectors, atol=1e-5)


def test_v2_grpc_with_the_standard_triton_client(runtime):
    # tritonclient.grpc runs in its own process: its protobuf modules clash with kserve's (see grpc_tool.py).
    health = grpc_tool.call("health", runtime.grpc_target, MODEL)
    assert health == {"live": True, "ready": True, "model_ready": True}
    metadata = grpc_tool.call("metadata", runtime.grpc_target, MODEL)
    assert metadata["inputs"][0]["datatype"] == "BYTES"
    result = grpc_tool.call("infer", runtime.grpc_target, MODEL, json.dumps(list(RELATED)))
    assert result["ok"] and result["dtypes"]["embedding"] == "float32"
    embedding = np.array(result["outputs"]["embedding"])
    assert embedding.shape == (2, 384)
    np.testing.assert_allclose(embedding, v1(runtime, list(RELATED)).json()["predictions"], atol=1e-5)


def test_openai_client_embeddings_float_and_base64(runtime):
    client = OpenAI(base_url=f"{runtime.url}/openai/v1", api_key="unused")
    # The official client asks for base64 by default and decodes it itself.
    default = client.embeddings.create(model=MODEL, input=list(RELATED))
    floats = client.embeddings.create(model=MODEL, input=RELATED[0], encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 384
    np.testing.assert_allclose(default.data[0].embedding, floats.data[0].embedding, atol=1e-6)
    assert default.usage.prompt_tokens > 0
    np.testing.assert_allclose(floats.data[0].embedding, v1(runtime, [RELATED[0]]).json()["predictions"][0],
                               atol=1e-5)
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_openai_errors_are_openai_shaped(runtime):
    response = httpx.post(f"{runtime.url}/openai/v1/embeddings", json={"model": "other", "input": "x"})
    assert response.status_code == 404 and "other" in response.json()["error"]["message"]
    response = httpx.post(f"{runtime.url}/openai/v1/completions", json={"model": MODEL, "prompt": "x"})
    assert response.status_code == 400 and "text_embedding" in response.json()["error"]["message"]
    # OpenAI's API also takes token-id arrays; this runtime tokenizes itself and refuses them, saying so.
    response = httpx.post(f"{runtime.url}/openai/v1/embeddings", json={"model": MODEL, "input": [[1, 2, 3]]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] and response.json()["error"]["type"]


def test_concurrent_requests_are_batched_and_answers_do_not_depend_on_neighbours(runtime):
    texts = [f"sentence number {i} about {'cats ' * (i % 7)}and dogs" for i in range(32)]
    alone = {t: np.array(v1(runtime, [t]).json()["predictions"][0]) for t in texts[:4]}
    before = _batch_histogram(runtime)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda t: v1(runtime, [t]), texts))
    after = _batch_histogram(runtime)
    assert all(a.status_code == 200 for a in answers)
    batches, batched_texts = after[0] - before[0], after[1] - before[1]
    assert batched_texts == 32
    assert batches < 32, f"32 concurrent requests ran in {batches} forward passes: no batching happened"
    for text, answer in zip(texts[:4], answers[:4]):
        np.testing.assert_allclose(answer.json()["predictions"][0], alone[text], atol=1e-5)


def _batch_histogram(runtime) -> tuple[float, float]:
    metrics = httpx.get(f"{runtime.url}/metrics").text
    count = re.search(rf'hfserve_batch_size_count{{model_name="{MODEL}"}} ([0-9.e+]+)', metrics)
    total = re.search(rf'hfserve_batch_size_sum{{model_name="{MODEL}"}} ([0-9.e+]+)', metrics)
    return (float(count.group(1)), float(total.group(1))) if count else (0.0, 0.0)


def test_over_length_text_is_truncated_not_rejected(runtime):
    response = v1(runtime, ["word " * 5000])
    assert response.status_code == 200 and len(response.json()["predictions"][0]) == 384


BAD_REQUESTS = [
    ("malformed json", dict(content=b'{"instances": ["a"', headers={"content-type": "application/json"}), 400),
    ("not json at all", dict(content=b"hello", headers={"content-type": "application/json"}), 400),
    ("missing instances", dict(json={"inputs_": ["a"]}), 400),
    ("instances not a list", dict(json={"instances": "a"}), 400),
    ("empty list", dict(json={"instances": []}), 400),
    ("number item", dict(json={"instances": [1]}), 400),
    ("null item", dict(json={"instances": [None]}), 400),
    ("object without text", dict(json={"instances": [{"txt": "a"}]}), 400),
    ("too many items", dict(json={"instances": ["a"] * 41}), 400),
    ("body over the limit", dict(json={"instances": ["a" * 250_000]}), 413),
    ("bad parameters", dict(json={"instances": ["a"], "parameters": {"normalize": "maybe"}}), 400),
    ("json array body", dict(json=["a"]), 400),
]


@pytest.mark.parametrize("name,request_kwargs,status", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_v1_input_gets_a_json_4xx_and_the_server_keeps_serving(runtime, name, request_kwargs, status):
    response = httpx.post(f"{runtime.url}/v1/models/{MODEL}:predict", timeout=30, **request_kwargs)
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]
    assert "Traceback" not in response.text
    assert v1(runtime, ["still serving"]).status_code == 200


BAD_V2 = [
    ("wrong datatype", {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}),
    ("wrong input name", {"inputs": [{"name": "txt", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}),
    ("wrong shape", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2, 2], "data": ["a"] * 4}]}),
    ("shape disagrees with data", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]}),
    ("no inputs", {"inputs": []}),
    ("missing inputs", {"id": "x"}),
    ("two inputs", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}] * 2}),
]


@pytest.mark.parametrize("name,body", BAD_V2, ids=[b[0] for b in BAD_V2])
def test_bad_v2_input_gets_a_json_400(runtime, name, body):
    response = httpx.post(f"{runtime.url}/v2/models/{MODEL}/infer", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_unknown_model_is_404_on_every_protocol(runtime):
    v1_answer = httpx.post(f"{runtime.url}/v1/models/nope:predict", json={"instances": ["a"]})
    assert v1_answer.status_code == 404 and "nope" in v1_answer.json()["error"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}
    v2_answer = httpx.post(f"{runtime.url}/v2/models/nope/infer", json=body)
    assert v2_answer.status_code == 404 and "nope" in v2_answer.json()["error"]


def test_bad_grpc_input_is_invalid_argument(runtime):
    wrong = grpc_tool.call("infer_fp32", runtime.grpc_target, MODEL)
    assert not wrong["ok"] and wrong["code"] == "StatusCode.INVALID_ARGUMENT" and "BYTES" in wrong["message"]
    good = grpc_tool.call("infer", runtime.grpc_target, MODEL, json.dumps(["fine"]))
    assert good["ok"] and len(good["outputs"]["embedding"][0]) == 384


def test_health_and_metrics(runtime):
    assert httpx.get(f"{runtime.url}/v2/health/live").json()["live"] is True
    assert httpx.get(f"{runtime.url}/v2/health/ready").json()["ready"] is True
    assert "hfserve_batch_size_bucket" in httpx.get(f"{runtime.url}/metrics").text


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
def test_v2_rest_with_the_standard_triton_http_client(runtime, binary):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(runtime.url.removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready(MODEL)
    text = httpclient.InferInput("text", [2], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in RELATED], dtype=np.object_), binary_data=binary)
    result = client.infer(MODEL, [text], outputs=[httpclient.InferRequestedOutput("embedding", binary_data=binary)])
    np.testing.assert_allclose(result.as_numpy("embedding"), v1(runtime, list(RELATED)).json()["predictions"],
                               atol=1e-5)
    client.close()
