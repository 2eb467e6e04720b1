"""Open Inference Protocol (V2) over gRPC, with the standard client (tritonclient.grpc)."""

import numpy as np
import pytest
import tritonclient.grpc as tritonclient_grpc

from conformance import protocol as P

pytestmark = pytest.mark.v2_grpc


@pytest.fixture
def grpc(minilm):
    client = tritonclient_grpc.InferenceServerClient(url=minilm.grpc_target)
    yield client
    client.close()


def _infer(grpc, model, texts):
    inp = tritonclient_grpc.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.asarray([t.encode() for t in texts], dtype=object))
    return grpc.infer(model, [inp], request_id="grpc-1", client_timeout=60)


def test_live_ready(grpc, minilm):
    assert grpc.is_server_live(client_timeout=10)
    assert grpc.is_server_ready(client_timeout=10)
    assert grpc.is_model_ready(minilm.model_name, client_timeout=10)


def test_model_metadata(grpc, minilm):
    meta = grpc.get_model_metadata(minilm.model_name, as_json=True, client_timeout=10)
    assert meta["name"] == minilm.model_name
    names = [i["name"] for i in meta["inputs"]]
    assert "text" in names, meta
    assert meta["outputs"], meta


def test_infer(grpc, minilm):
    result = _infer(grpc, minilm.model_name, P.TEXTS)
    response = result.get_response(as_json=True)
    assert response["model_name"] == minilm.model_name
    assert response.get("id") == "grpc-1", f"request id not echoed: {response.get('id')!r}"
    name = response["outputs"][0]["name"]
    out = result.as_numpy(name)
    assert out is not None and out.dtype == np.float32, (name, None if out is None else out.dtype)
    P.assert_embeddings(out.astype(np.float64), len(P.TEXTS), minilm.embedding_dim)


def test_matches_rest(grpc, minilm):
    result = _infer(grpc, minilm.model_name, P.TEXTS)
    name = result.get_response(as_json=True)["outputs"][0]["name"]
    with minilm.http() as http:
        rest = P.v2_outputs(P.v2_infer(http, minilm.model_name, P.TEXTS))
    P.assert_close(result.as_numpy(name), rest[name], P.ATOL, "gRPC vs REST")


def test_unknown_model_is_an_error(grpc):
    with pytest.raises(tritonclient_grpc.InferenceServerException) as exc:
        _infer(grpc, "no-such-model", ["x"])
    assert exc.value.status() in ("StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT") \
        or "not found" in str(exc.value).lower(), str(exc.value)
