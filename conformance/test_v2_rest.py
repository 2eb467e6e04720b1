"""Open Inference Protocol (V2) over REST: health, metadata, infer."""

import pytest

from conformance import protocol as P

pytestmark = pytest.mark.v2_rest


def test_server_live_and_ready(minilm):
    with minilm.http() as http:
        live = P.ok_json(http.get("/v2/health/live"))
        ready = P.ok_json(http.get("/v2/health/ready"))
    assert live.get("live") is True, live
    assert ready.get("ready") is True, ready


def test_server_metadata(minilm):
    with minilm.http() as http:
        body = P.ok_json(http.get("/v2"))
    assert body.get("name"), body
    assert "version" in body, body


def test_model_ready(minilm):
    with minilm.http() as http:
        r = http.get(f"/v2/models/{minilm.model_name}/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.get("ready") is True, body


def test_model_metadata(minilm):
    with minilm.http() as http:
        body = P.ok_json(http.get(f"/v2/models/{minilm.model_name}"))
    assert body.get("name") == minilm.model_name, body
    inputs = {i["name"]: i for i in body.get("inputs", [])}
    assert "text" in inputs, f"metadata declares no 'text' input: {body}"
    assert inputs["text"]["datatype"] == "BYTES", inputs["text"]
    outputs = body.get("outputs", [])
    assert outputs, f"metadata declares no outputs: {body}"
    assert all(o["datatype"] == "FP32" for o in outputs), outputs


def test_infer(minilm):
    with minilm.http() as http:
        r = P.v2_infer(http, minilm.model_name, P.TEXTS, request_id="conformance-1")
        body = P.ok_json(r)
        meta = P.ok_json(http.get(f"/v2/models/{minilm.model_name}"))
    assert body.get("model_name") == minilm.model_name, body.get("model_name")
    assert body.get("id") == "conformance-1", f"request id not echoed: {body.get('id')!r}"
    out = P.v2_single_output(r)
    P.assert_embeddings(out, len(P.TEXTS), minilm.embedding_dim)
    declared = {o["name"] for o in meta["outputs"]}
    assert {o["name"] for o in body["outputs"]} <= declared, (body["outputs"][0]["name"], declared)
    dtypes = {o["datatype"] for o in body["outputs"]}
    assert dtypes == {"FP32"}, dtypes


def test_infer_matches_v1(minilm):
    with minilm.http() as http:
        v1 = P.v1_embeddings(P.v1_predict(http, minilm.model_name, P.TEXTS))
        v2 = P.v2_single_output(P.v2_infer(http, minilm.model_name, P.TEXTS))
    # The same vectors, normalisation included (not only the same directions).
    P.assert_close(v1, v2, P.ATOL, "V1 vs V2")
