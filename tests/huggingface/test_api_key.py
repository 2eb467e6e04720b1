"""The optional API key (serving/api_key.py, security review M5) over real HTTP and gRPC, with the OpenAI client, on
runtime 1 and on the transformer: probes and /metrics exempt, everything else 401 / UNAUTHENTICATED without the key,
and the key never in a response or the log."""

import subprocess

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from openai import AuthenticationError, OpenAI

from devkit.processes import free_port
from tests.servers import NO_DRAIN_DELAY, ServerStarter

MODEL = "keyed"
KEY = "hfs-test-6f1c2a9e4b7d"
WRONG = "hfs-test-000000000000"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("api-key") / "api-key"
    path.write_text(KEY + "\n")  # a Secret's file may end with a newline
    return path


@pytest.fixture(scope="module")
def keyed(start_huggingface_runtime, tiny_models, key_file):
    return start_huggingface_runtime(tiny_models("text_embedding"), MODEL, "--api_key_file", str(key_file))


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_probes_and_metrics_answer_without_the_key(keyed):
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        for path in ("/v2/health/live", "/v2/health/ready", "/health", "/", "/metrics", f"/v2/models/{MODEL}/ready",
                     f"/v1/models/{MODEL}"):
            assert http.get(path).status_code == 200, path


@pytest.mark.parametrize("headers", [{}, bearer(WRONG), {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": KEY}, bearer(KEY[:-1])],
                         ids=["none", "wrong", "basic-scheme", "no-scheme", "prefix"])
def test_every_other_route_is_refused_with_a_json_401_in_its_own_shape(keyed, headers):
    with httpx.Client(base_url=keyed.url, timeout=30, headers=headers) as http:
        v2 = http.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]})
        openai = http.post("/openai/v1/embeddings", json={"model": MODEL, "input": "hi"})
        tei = http.post("/embed", json={"inputs": "hi"})
        metadata = http.get(f"/v2/models/{MODEL}")
        schema = http.get("/openapi.json")
    for response in (v2, openai, tei, metadata, schema):
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert KEY not in response.text and WRONG not in response.text
    assert isinstance(v2.json()["error"], str) and "Authorization: Bearer" in v2.json()["error"]
    assert openai.json()["error"]["code"] == "invalid_api_key"
    assert tei.json()["error_type"] == "unauthorized"


def test_the_key_opens_every_route(keyed):
    with httpx.Client(base_url=keyed.url, timeout=30, headers=bearer(KEY)) as http:
        assert http.post("/embed", json={"inputs": "hi"}).status_code == 200
        assert http.get(f"/v2/models/{MODEL}").json()["name"] == MODEL
        assert http.post(f"/v1/models/{MODEL}:predict", json={"instances": ["hi"]}).status_code == 200


def test_the_openai_client_passes_its_api_key(keyed):
    good = OpenAI(base_url=f"{keyed.url}/openai/v1", api_key=KEY, max_retries=0)
    assert len(good.embeddings.create(model=MODEL, input=["a", "b"]).data) == 2
    with pytest.raises(AuthenticationError) as refused:
        OpenAI(base_url=f"{keyed.url}/openai/v1", api_key=WRONG, max_retries=0).embeddings.create(
            model=MODEL, input="a")
    assert refused.value.status_code == 401


def _infer_request() -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest().InferInputTensor(name="text", datatype="BYTES", shape=[1])
    tensor.contents.bytes_contents.append(b"hi")
    return pb.ModelInferRequest(model_name=MODEL, inputs=[tensor])


def test_grpc_needs_the_key_in_metadata_except_for_health(keyed):
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready
        for metadata in ((), (("authorization", f"Bearer {WRONG}"),)):
            for call, request in ((stub.ModelInfer, _infer_request()),
                                  (stub.ModelMetadata, pb.ModelMetadataRequest(name=MODEL))):
                with pytest.raises(grpc.RpcError) as refused:
                    call(request, metadata=metadata, timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert KEY not in refused.value.details()
        answer = stub.ModelInfer(_infer_request(), metadata=(("authorization", f"Bearer {KEY}"),), timeout=30)
        assert answer.model_name == MODEL and answer.outputs


def test_the_key_never_reaches_the_log(keyed):
    with httpx.Client(base_url=keyed.url, timeout=30) as http:
        http.post("/embed", json={"inputs": "hi"}, headers=bearer(WRONG))
        http.post("/embed", json={"inputs": "hi"}, headers=bearer(KEY))
    log = keyed.server.log_path.read_text(errors="replace")
    assert "missing or wrong API key" in log  # the refusals are logged ...
    assert KEY not in log and WRONG not in log  # ... without what was sent or expected


@pytest.fixture(scope="module")
def env_keyed_with_metrics(tmp_path_factory, tiny_models):
    starter = ServerStarter(tmp_path_factory.mktemp("env-keyed"))
    try:
        yield starter.start("hfserve.huggingface", tiny_models("text_embedding"), MODEL, "--api_key_covers_metrics",
                            env={**NO_DRAIN_DELAY, "HFSERVE_API_KEY": KEY})
    finally:
        starter.stop_all()


def test_the_key_from_the_environment_stays_off_the_command_line_and_can_cover_metrics(env_keyed_with_metrics):
    server = env_keyed_with_metrics
    cmdline = subprocess.run(["ps", "-o", "args=", "-p", str(server.server.pid)], capture_output=True,
                             text=True).stdout
    assert "hfserve.huggingface" in cmdline and KEY not in cmdline
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers=bearer(KEY)).status_code == 200
        assert http.post("/embed", json={"inputs": "hi"}, headers=bearer(KEY)).status_code == 200


@pytest.fixture(scope="module")
def keyed_transformer(tmp_path_factory, minilm_dir, key_file):
    """The transformer with no Triton behind it: a request the key lets through gets the 503 of a missing
    predictor, one without the key never gets that far."""
    starter = ServerStarter(tmp_path_factory.mktemp("keyed-transformer"))
    try:
        yield starter.start("hfserve.transformer", minilm_dir, MODEL, "--predictor_host", f"127.0.0.1:{free_port()}",
                            "--api_key_file", str(key_file), env=NO_DRAIN_DELAY)
    finally:
        starter.stop_all()


def test_the_transformer_checks_the_key_on_http_and_grpc(keyed_transformer):
    server = keyed_transformer
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.post("/embed", json={"inputs": "hi"}).status_code == 401
        assert http.post("/embed", json={"inputs": "hi"}, headers=bearer(KEY)).status_code == 503
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=30).live
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(_infer_request(), timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as unavailable:
            stub.ModelInfer(_infer_request(), metadata=(("authorization", f"Bearer {KEY}"),), timeout=30)
        assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
