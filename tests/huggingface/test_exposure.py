"""What the serving ports let a client do: no model-repository API unless asked for, readiness that tells the
truth, and every served route documented in docs/routes.md."""

import re
from pathlib import Path

import httpx
import pytest

from tests import grpc_tool

REPO = Path(__file__).resolve().parents[2]
MODEL = "sentiment"
TEXTS = {"instances": ["a fine day", "a dreadful day"]}

@pytest.fixture(scope="module")
def default_server(start_huggingface_runtime, tiny_models):
    return start_huggingface_runtime(tiny_models("sequence_classification"), MODEL)

@pytest.fixture(scope="module")
def repository_server(start_huggingface_runtime, tiny_models):
    return start_huggingface_runtime(tiny_models("sequence_classification"), MODEL, "--enable_repository_routes")

@pytest.mark.timeout(600)
def test_unload_request_is_refused_and_the_model_keeps_serving(default_server):
    with httpx.Client(base_url=default_server.url, timeout=30) as http:
        for action in ("unload", "load"):
            r = http.post(f"/v2/repository/models/{MODEL}/{action}", json={})
            assert r.status_code == 404 and isinstance(r.json()["error"], str)
        assert http.post(f"/v1/models/{MODEL}:predict", json=TEXTS).status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get(f"/v2/models/{MODEL}/ready").status_code == 200
        assert not any(p.startswith("/v2/repository") for p in http.get("/openapi.json").json()["paths"])

def test_grpc_unload_is_unimplemented_and_the_model_keeps_serving(default_server):
    answer = grpc_tool.call("unload", default_server.grpc_target, MODEL)
    assert answer["ok"] is False and answer["code"] == "StatusCode.UNIMPLEMENTED", answer
    assert grpc_tool.call("health", default_server.grpc_target, MODEL) == {
        "live": True, "ready": True, "model_ready": True}
    assert httpx.post(f"{default_server.url}/v1/models/{MODEL}:predict", json=TEXTS, timeout=30).status_code == 200

def test_a_model_version_is_a_client_error(default_server):
    with httpx.Client(base_url=default_server.url, timeout=30) as http:
        for method, path in (("GET", f"/v2/models/{MODEL}/versions/1/ready"), ("GET", f"/v2/models/{MODEL}/versions/1"),
                             ("GET", f"/v2/models/{MODEL}?model_version=1"),
                             ("POST", f"/v2/models/{MODEL}/versions/1/infer")):
            r = http.request(method, path, json={"inputs": []} if method == "POST" else None)
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert "version" in r.json()["error"]

@pytest.mark.timeout(600)
def test_with_the_flag_unload_works_and_readiness_turns_false(repository_server):
    with httpx.Client(base_url=repository_server.url, timeout=30) as http:
        assert http.get("/v2/health/ready").status_code == 200
        assert http.post(f"/v2/repository/models/{MODEL}/unload", json={}).status_code == 200
        assert http.post(f"/v1/models/{MODEL}:predict", json=TEXTS).status_code == 404
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503 and isinstance(ready.json()["error"], str)

def documented(section: str) -> set[str]:
    text = (REPO / "docs" / "routes.md").read_text()
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", body, flags=re.MULTILINE))

def test_every_served_http_route_is_documented(default_server):

    paths = set(httpx.get(f"{default_server.url}/openapi.json", timeout=30).json()["paths"])
    missing = paths - documented("## HTTP")
    assert not missing, f"served but not in docs/routes.md: {sorted(missing)}"

def test_every_grpc_method_is_documented():
    from kserve.protocol.grpc import grpc_predict_v2_pb2

    methods = {m.name for m in grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods}
    assert methods == documented("## gRPC")
