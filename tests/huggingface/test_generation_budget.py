"""Security review H3 on a real runtime-1 server (tiny T5, random weights, real transformers generate()): one
request's token budget, its wall-clock deadline, the bound on requests waiting for the model, and a generation
that stops when its client goes away (HTTP non-streaming, streaming, gRPC).

The tiny T5 does not reach EOS on PROMPT within 50 tokens (checked by the first test, as the review's step 1).
It generates 7 to 600 tokens a second on a shared 2-core machine, so 4000 tokens take 7 s at the very least: any
earlier end below is the server's doing. How many tokens ran is what the server's engine counted, read from its log
("generation stopped after N generated tokens")."""

import json
import re
import socket
import time

import grpc
import httpx
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

from tests.servers import served

PROMPT = "translate this sentence"
LONG = 4000  # new tokens: 7 s to minutes of generation, within --max_total_tokens
limited = served("text2text_generation", "t5", "--max_total_tokens", "4200", "--max_input_tokens", "16",
                 "--max_queued_generations", "1")
TIMEOUT_S = 0.5
hurried = served("text2text_generation", "t5", "--generation_timeout_s", str(TIMEOUT_S))
STOPPED = re.compile(r"generation stopped after (\d+) generated tokens: the client went away")


def v1(server, instances, parameters, timeout=120):
    return httpx.post(f"{server.url}/v1/models/{server.model_name}:predict",
                      json={"instances": instances, "parameters": parameters}, timeout=timeout)


def stopped_counts(server) -> list[int]:
    return [int(n) for n in STOPPED.findall(server.server.log_path.read_text(errors="replace"))]


def wait_for_new_stop(server, before: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = stopped_counts(server)
        if len(counts) > before:
            return counts[before]
        time.sleep(0.1)
    log = server.server.log_path.read_text(errors="replace")
    raise AssertionError(f"the server logged no stopped generation within {timeout} s; its log ends:\n{log[-3000:]}")


def raw_post(server, path: str, body: bytes) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def infer_request(server, max_new_tokens: int) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=server.model_name, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[PROMPT.encode()]))],
        parameters={"max_new_tokens": pb.InferParameter(int64_param=max_new_tokens)})


def assert_model_free(server) -> float:
    """A short generation is served at once: nothing else holds the model."""
    started = time.monotonic()
    response = v1(server, [PROMPT], {"max_new_tokens": 3})
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def test_the_prompt_does_not_end_early_and_the_budget_is_enforced_before_generating(limited):
    first = v1(limited, [PROMPT], {"max_new_tokens": 50})
    assert first.status_code == 200, first.text
    assert first.json()["predictions"][0]["finish_reason"] == "length"  # the precondition of every test below
    started = time.monotonic()
    over = v1(limited, [PROMPT] * 64, {"max_new_tokens": 4096})  # the review's request: 64 x 4096 tokens
    assert over.status_code == 400 and "--max_total_tokens" in over.json()["error"], over.text
    assert "4200" in over.json()["error"]
    two = v1(limited, [PROMPT] * 2, {"max_new_tokens": 2095})  # 2 x (4 + 2095) > 4200 once tokenized
    assert two.status_code == 400 and "--max_total_tokens" in two.json()["error"], two.text
    long_prompt = " ".join(["word"] * 40)
    too_long = v1(limited, [long_prompt], {"max_new_tokens": 2})
    assert too_long.status_code == 400 and "--max_input_tokens" in too_long.json()["error"], too_long.text
    assert time.monotonic() - started < 10  # refused, not generated
    cut = httpx.post(f"{limited.url}/generate", json={"inputs": long_prompt,
                                                      "parameters": {"max_new_tokens": 2, "truncate": 8}}, timeout=60)
    assert cut.status_code == 200, cut.text
    tgi = httpx.post(f"{limited.url}/generate", json={"inputs": long_prompt, "parameters": {"max_new_tokens": 2}})
    assert tgi.status_code in (413, 422) and "--max_input_tokens" in tgi.json()["error"], tgi.text
    openai = httpx.post(f"{limited.url}/openai/v1/completions",
                        json={"model": limited.model_name, "prompt": long_prompt, "max_tokens": 2}, timeout=60)
    assert openai.status_code == 400 and "--max_input_tokens" in openai.json()["error"]["message"], openai.text


def test_a_generation_past_its_deadline_ends_with_an_error_naming_it(hurried):
    """--generation_timeout_s 0.5: a 4000-token generation (7 s at the least) ends with an error at the deadline,
    on HTTP (a stream with an error event) and gRPC; the model is then free for the next request, whose deadline runs out the same way."""
    for _ in range(2):
        started = time.monotonic()
        response = httpx.post(f"{hurried.url}/generate", timeout=120,
                              json={"inputs": PROMPT, "parameters": {"max_new_tokens": LONG}})
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert "--generation_timeout_s" in response.json()["error"] and "0.5 s" in response.json()["error"]
        assert TIMEOUT_S <= took < TIMEOUT_S + 5, took
    stream = httpx.post(f"{hurried.url}/openai/v1/completions", timeout=120,
                        json={"model": hurried.model_name, "prompt": PROMPT, "max_tokens": LONG, "stream": True})
    assert stream.status_code == 200  # the deadline passed after the stream started: an error event, then [DONE]
    events = [line.removeprefix("data: ") for line in stream.text.splitlines() if line.startswith("data: ")]
    assert "--generation_timeout_s" in json.loads(events[-2])["error"]["message"] and events[-1] == "[DONE]", events[-3:]
    tgi = httpx.post(f"{hurried.url}/generate_stream", timeout=120,
                     json={"inputs": PROMPT, "parameters": {"max_new_tokens": LONG}})
    last = json.loads([line for line in tgi.text.splitlines() if line.startswith("data:")][-1].removeprefix("data:"))
    assert "--generation_timeout_s" in last["error"], last  # TGI's error event names the deadline, not "failed"
    with grpc.insecure_channel(hurried.grpc_target) as channel:
        try:
            pbg.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(hurried, LONG), timeout=60)
            raise AssertionError("a 4000-token generation finished within 0.5 s")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and "--generation_timeout_s" in error.details(), error


def test_a_non_streaming_generation_stops_when_its_client_disconnects(limited):
    before = len(stopped_counts(limited))
    body = b'{"instances": ["' + PROMPT.encode() + b'"], "parameters": {"max_new_tokens": %d}}' % LONG
    sock = raw_post(limited, f"/v1/models/{limited.model_name}:predict", body)
    time.sleep(1.0)  # the client gives up after 1 s (curl -m 1)
    sock.close()
    gone_at = time.monotonic()
    tokens = wait_for_new_stop(limited, before)
    assert 0 <= tokens < LONG
    assert time.monotonic() - gone_at < 5  # 4000 tokens take 7 s at the least
    assert assert_model_free(limited) < 10


def test_a_stream_stops_when_its_client_disconnects(limited):
    before = len(stopped_counts(limited))
    body = b'{"inputs": "' + PROMPT.encode() + b'", "parameters": {"max_new_tokens": %d}}' % LONG
    sock = raw_post(limited, "/generate_stream", body)
    received = b""
    while received.count(b"data:") < 3:  # three tokens have been streamed
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    sock.close()
    tokens = wait_for_new_stop(limited, before)
    assert 3 <= tokens < LONG
    assert assert_model_free(limited) < 10


def test_a_cancelled_grpc_call_stops_its_generation(limited):
    before = len(stopped_counts(limited))
    with grpc.insecure_channel(limited.grpc_target) as channel:
        stub = pbg.GRPCInferenceServiceStub(channel)
        try:
            stub.ModelInfer(infer_request(limited, LONG), timeout=1.5)
            raise AssertionError("a 4000-token generation finished within 1.5 s")
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error
    tokens = wait_for_new_stop(limited, before)
    assert 0 <= tokens < LONG
    assert assert_model_free(limited) < 10


def test_requests_beyond_the_queue_bound_get_429_at_once(limited):
    """--max_queued_generations 1: one generating, one waiting, the third refused at once; when the two long
    requests' clients leave, both stop (the waiting one leaves the queue) and the model is free."""
    before = len(stopped_counts(limited))
    body = b'{"inputs": "' + PROMPT.encode() + b'", "parameters": {"max_new_tokens": %d}}' % LONG
    long_ones = [raw_post(limited, "/generate", body) for _ in range(2)]
    refused = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and refused is None:  # until both long requests are admitted
            started = time.monotonic()
            response = httpx.post(f"{limited.url}/generate", timeout=60,
                                  json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2}})
            if response.status_code == 429:
                refused = (response, time.monotonic() - started)
            else:
                assert response.status_code == 200, response.text
    finally:
        for sock in long_ones:
            sock.close()
    assert refused is not None, "no request was refused while two long ones held the model and its queue"
    response, took = refused
    assert response.json()["error_type"] == "overloaded" and "--max_queued_generations" in response.json()["error"]
    assert took < 2.0, took
    wait_for_new_stop(limited, before + 1)  # both stopped: the running one and the one that waited
    assert assert_model_free(limited) < 10
