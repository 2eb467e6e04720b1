"""Security review M1 over real gRPC on loopback (runtime 1, the packaged MiniLM): inference calls share
--max_concurrent_requests with HTTP and get RESOURCE_EXHAUSTED with a message beyond it, gRPC listens on the
configured address only, and messages over --max_request_bytes are refused. The Triton runtime's transformer (the
same HFModelServer) is checked for the bind address, the message limit and the read deadline (M2)."""

import asyncio
import socket
import threading
import time

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

from devkit.ports import reserve_port
from tests.servers import ServerStarter, served

guarded = served("minilm", "guarded", "--max_concurrent_requests", "2")
LONG = ("the quick brown fox jumps over the lazy dog " * 60).encode()  # truncated to 256 tokens


@pytest.fixture(scope="module")
def transformer(tmp_path_factory, minilm_dir):
    """The Triton runtime's transformer with no Triton behind it (a reserved port nothing listens on): its gRPC
    server and HTTP front door are runtime 1's HFModelServer, which is what these legs check."""
    starter = ServerStarter(tmp_path_factory.mktemp("transformer-limits"))
    try:
        yield starter.start("hfserve.transformer", minilm_dir, "guarded", "--predictor_host",
                            f"127.0.0.1:{reserve_port()}", "--request_read_timeout_s", "2")
    finally:
        starter.stop_all()


def infer_request(server, texts: list[bytes]) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=server.model_name, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[len(texts)], contents=pb.InferTensorContents(bytes_contents=texts))])


def test_grpc_calls_beyond_the_limit_get_resource_exhausted_while_probes_answer(guarded):
    heavy = infer_request(guarded, [LONG] * 32)

    async def burst(n: int = 24):
        async with grpc.aio.insecure_channel(guarded.grpc_target) as channel:
            stub = pbg.GRPCInferenceServiceStub(channel)
            calls = [stub.ModelInfer(heavy, timeout=300) for _ in range(n)]
            await asyncio.sleep(0.05)
            live = await stub.ServerLive(pb.ServerLiveRequest(), timeout=30)  # never counted, never refused
            return await asyncio.gather(*calls, return_exceptions=True), live.live

    for _ in range(3):  # a burst that the machine happened to serialize is sent again, not counted as a pass
        results, live = asyncio.run(burst())
        refused = [r for r in results if isinstance(r, grpc.RpcError)]
        if refused:
            break
    assert live is True
    answered = [r for r in results if isinstance(r, pb.ModelInferResponse)]
    assert answered and refused, (len(answered), [r.code() for r in refused])
    for error in refused:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert "limit of 2 concurrent requests (HTTP and gRPC together)" in error.details()
    with grpc.insecure_channel(guarded.grpc_target) as channel:  # the slots were given back
        assert pbg.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(guarded, [b"hi"]), timeout=60).outputs


def test_http_and_grpc_share_the_slots(guarded):
    """Two heavy gRPC calls take both slots: an HTTP POST meanwhile gets the 429 that names both protocols."""
    heavy = infer_request(guarded, [LONG] * 64)
    outcomes: list = []

    def call():
        with grpc.insecure_channel(guarded.grpc_target) as channel:
            try:
                outcomes.append(pbg.GRPCInferenceServiceStub(channel).ModelInfer(heavy, timeout=300))
            except grpc.RpcError as error:
                outcomes.append(error)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    seen = set()
    while any(t.is_alive() for t in threads) and 429 not in seen:
        response = httpx.post(f"{guarded.url}/v1/models/{guarded.model_name}:predict", json={"instances": ["hi"]},
                              timeout=60)
        seen.add(response.status_code)
        if response.status_code == 429:
            assert "HTTP and gRPC together" in response.json()["error"]
    for thread in threads:
        thread.join(300)
    assert all(isinstance(o, pb.ModelInferResponse) for o in outcomes), outcomes
    assert 429 in seen, f"no HTTP POST was refused while two gRPC calls held both slots: {seen}"


def test_grpc_listens_on_the_bind_address_only(guarded):
    """--bind_address 127.0.0.1: the gRPC port answers there and not on 127.0.0.2, an address of the same loopback
    interface that a listener on all interfaces does answer on (kserve's own server listens on [::])."""
    assert_listens_on_loopback_only(guarded)


def assert_listens_on_loopback_only(server) -> None:
    port = int(server.grpc_target.rsplit(":", 1)[1])
    control = socket.create_server(("0.0.0.0", 0))
    try:
        socket.create_connection(("127.0.0.2", control.getsockname()[1]), timeout=5).close()
    finally:
        control.close()
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    try:
        socket.create_connection(("127.0.0.2", port), timeout=5).close()
        raise AssertionError("gRPC answered on 127.0.0.2 with --bind_address 127.0.0.1")
    except ConnectionRefusedError:
        pass


def test_messages_over_the_request_limit_are_refused(guarded):
    assert_big_message_refused(guarded)
    with grpc.insecure_channel(guarded.grpc_target) as channel:
        assert pbg.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(guarded, [b"hi"]), timeout=60).outputs


def assert_big_message_refused(server) -> None:
    big = infer_request(server, [b"x" * (600 * 1024)] * 2)  # 1.2 MB over the default 1 MiB
    with grpc.insecure_channel(server.grpc_target) as channel:
        started = time.monotonic()
        try:
            pbg.GRPCInferenceServiceStub(channel).ModelInfer(big, timeout=60)
            raise AssertionError("a 1.2 MB message was accepted")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        assert time.monotonic() - started < 10


def test_the_transformer_has_the_same_front_door(transformer):
    """The Triton runtime's transformer: gRPC on the bind address only, big messages refused, a trickled HTTP body
    cut off with 408 at --request_read_timeout_s while its liveness answers."""
    assert_listens_on_loopback_only(transformer)
    assert_big_message_refused(transformer)
    host, port = transformer.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(b"POST /v1/models/guarded:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 1000\r\n\r\n{")
        started = time.monotonic()
        assert httpx.get(f"{transformer.url}/v2/health/live", timeout=30).status_code == 200
        received = b""
        while chunk := slow.recv(65536):  # the server answers, then closes
            received += chunk
        took = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408") and b"--request_read_timeout_s" in received, received[:300]
    assert took < 2 + 5, took
