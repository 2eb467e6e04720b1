"""Rolling updates: on SIGTERM the runtime reports not-ready at once, keeps serving for --drain_delay_s (while
Kubernetes takes the pod out of its endpoints), then refuses new connections while requests in flight finish.

Legs: HTTP under load (runtime 1); keep-alive clients told to leave and a just-accepted raw connection answered
(runtime 1, and the Triton runtime's transformer: the same front door, serving/drain.py); gRPC calls in flight when
the listener closes finish, later ones are refused with UNAVAILABLE (runtime 1's gRPC server)."""

import json
import signal
import socket
import threading
import time

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pbg

from devkit.ports import reserve_port
from tests.servers import ServerStarter

MODEL = "minilm"
DELAY_S = 4.0
# heavy requests take a while, so some are really in flight when the signal comes; light ones come back quickly,
# so new requests keep arriving during the drain delay even on a loaded machine
HEAVY = {"instances": [f"sentence number {i} about rolling updates and endpoints " * 6 for i in range(16)]}
LIGHT = {"instances": ["a short one"]}


@pytest.fixture
def server(tmp_path, minilm_dir):
    starter = ServerStarter(tmp_path)
    try:
        yield starter.start("hfserve.huggingface", minilm_dir, MODEL, "--drain_delay_s", str(DELAY_S),
                            ready_path="/v2/models/{model}/ready")
    finally:
        starter.stop_all()


@pytest.fixture
def transformer(tmp_path, minilm_dir):
    """The Triton runtime's transformer with no Triton behind it (a reserved port nothing listens on): not ready,
    live, and its HTTP front door drains like runtime 1's, which is what the keep-alive leg checks."""
    starter = ServerStarter(tmp_path)
    nothing_there = reserve_port()
    try:
        yield starter.start("hfserve.transformer", minilm_dir, MODEL, "--drain_delay_s", str(DELAY_S),
                            "--predictor_host", f"127.0.0.1:{nothing_there}")
    finally:
        starter.stop_all()


class Load:
    """Threads sending predict requests, each on a fresh connection; every outcome recorded with its times."""

    def __init__(self, url: str):
        self.url, self.stop = url, threading.Event()
        self.outcomes: list[tuple[float, float, str]] = []  # (start, end, "200" | "503" | exception name)
        self.threads = [threading.Thread(target=self.run, args=(body,), daemon=True)
                        for body in (HEAVY, HEAVY, LIGHT, LIGHT)]

    def run(self, body: dict) -> None:
        while not self.stop.is_set():
            if self.send(body) == "ConnectError":
                time.sleep(0.05)

    def send(self, body: dict) -> str:
        start = time.monotonic()
        try:
            with httpx.Client(timeout=60, headers={"connection": "close"}) as http:
                outcome = str(http.post(f"{self.url}/v1/models/{MODEL}:predict", json=body).status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        self.outcomes.append((start, time.monotonic(), outcome))
        return outcome

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(70)


@pytest.mark.timeout(600)
def test_sigterm_under_load_loses_no_request(server):
    with Load(server.url) as load:
        deadline = time.monotonic() + 60
        while len(load.outcomes) < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(load.outcomes) >= 8, "the load did not get going"
        sigterm_at = time.monotonic()
        server.server.signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 503  # out of the endpoints
        during_delay = Load(server.url)  # one request sent inside the delay, on a new connection
        probe = threading.Thread(target=during_delay.send, args=(LIGHT,))
        probe.start()
        exit_code = server.server.process.wait(DELAY_S + 60)
        stopped_at = time.monotonic()
        probe.join(70)
    assert exit_code == 0, server.server.log_tail()
    outcomes = load.outcomes
    delay_end = sigterm_at + DELAY_S
    # every request begun while the server still accepted succeeded, including those in flight at SIGTERM
    before_close = [o for o in outcomes if o[0] < delay_end - 0.3]
    assert before_close and all(o[2] == "200" for o in before_close), [o for o in before_close if o[2] != "200"]
    in_flight = [o for o in outcomes if o[0] < sigterm_at < o[1]]
    assert in_flight and all(o[2] == "200" for o in in_flight), "nothing was in flight at SIGTERM"
    probed = during_delay.outcomes
    assert probed and probed[0][0] < delay_end and probed[0][2] == "200", probed  # accepted while draining
    # after the delay: served, or refused at connect time; nothing else (no reset, no 5xx)
    assert {o[2] for o in outcomes} <= {"200", "ConnectError"}, sorted({o[2] for o in outcomes})
    assert stopped_at - sigterm_at >= DELAY_S


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return False
    except OSError:
        return True


def _keep_alive_leg(running, request: tuple[str, str, dict | None]) -> None:
    """Two drain races, made deterministic: a pooled keep-alive client is sent `connection: close` from SIGTERM on,
    and a connection accepted just before the listener closes still gets an answer to the request it sends after."""
    method, path, body_json = request
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    port = int(port)
    keep_alive: list[tuple[float, float, str, str]] = []  # (start, end, outcome, connection header)
    stop = threading.Event()

    def pooled() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                start = time.monotonic()
                try:
                    response = http.request(method, f"{running.url}{path}", json=body_json)
                    keep_alive.append((start, time.monotonic(), str(response.status_code),
                                       response.headers.get("connection", "")))
                except httpx.HTTPError as exc:
                    keep_alive.append((start, time.monotonic(), type(exc).__name__, ""))
                time.sleep(0.05)

    client = threading.Thread(target=pooled, daemon=True)
    client.start()
    deadline = time.monotonic() + 60
    while len(keep_alive) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sigterm_at = time.monotonic()
    running.server.signal(signal.SIGTERM)
    delay_end = sigterm_at + DELAY_S
    time.sleep(max(0.0, delay_end - 0.8 - time.monotonic()))
    stop.set()  # the pooled client starts nothing more: what it must have seen is `connection: close`
    time.sleep(max(0.0, delay_end - 0.5 - time.monotonic()))
    # accepted while the server still accepts; the pooled client's last answer is awaited only at the end (on a
    # loaded machine it can come after the listener closed, and the raw request must go out within the grace)
    early = socket.create_connection((host, port), timeout=5)
    try:
        while not _refused(host, port):
            assert time.monotonic() < delay_end + 30, "the listener never closed"
            time.sleep(0.02)
        body = b"" if body_json is None else json.dumps(body_json).encode()
        early.sendall(f"{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                      f"content-length: {len(body)}\r\n\r\n".encode() + body)
        early.settimeout(30)
        answer = b""
        while chunk := early.recv(65536):
            answer += chunk
    finally:
        early.close()
    client.join(70)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert running.server.process.wait(60) == 0, running.server.log_tail()
    # answered before SIGTERM: keep-alive; begun after it: told to close. One in flight at SIGTERM (seconds long on
    # a loaded machine) is answered after the drain began, so it may say either; it must still be a 200.
    before, after = [k for k in keep_alive if k[1] < sigterm_at], [k for k in keep_alive if k[0] > sigterm_at + 0.2]
    assert before and all(k[2] == "200" and k[3] != "close" for k in before), before
    assert after and all(k[2] == "200" and k[3] == "close" for k in after), after
    assert all(k[2] == "200" for k in keep_alive), keep_alive


@pytest.mark.timeout(600)
def test_keep_alive_clients_are_told_to_leave_and_a_just_accepted_connection_is_answered(server):
    _keep_alive_leg(server, ("POST", f"/v1/models/{MODEL}:predict", LIGHT))


@pytest.mark.timeout(600)
def test_transformer_keep_alive_clients_are_told_to_leave_and_a_just_accepted_connection_is_answered(transformer):
    _keep_alive_leg(transformer, ("GET", "/v2/health/live", None))


def _infer(texts: list[str]) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name=MODEL, inputs=[pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[len(texts)],
        contents=pb.InferTensorContents(bytes_contents=[t.encode() for t in texts]))])


def _call(stub, request) -> tuple[float, float, str]:
    start = time.monotonic()
    try:
        stub.ModelInfer(request, timeout=120)
        code = "OK"
    except grpc.RpcError as exc:
        code = exc.code().name
    return start, time.monotonic(), code


@pytest.mark.timeout(600)
def test_grpc_calls_in_flight_finish_and_later_ones_are_refused(server):
    """gRPC serves through the drain delay and stops only after HTTP: of heavy calls sent back to back by two
    overlapping senders from just before the listener closes, one admitted before gRPC stopped taking calls finishes
    OK after the first refusal (so it was in flight then and was not cut off); a client on one channel throughout sees
    only OK, then UNAVAILABLE, never a call cut off."""
    # back to back, so one is always in flight; each well inside the 30 s grace even at load average 19 (64 texts of
    # 200 tokens took 30.5 s there and were cut at the grace)
    light, heavy = _infer(["a short one"]), _infer([f"sentence {i} about rolling updates " * 8 for i in range(8)])
    channel = grpc.insecure_channel(server.grpc_target)
    stub = pbg.GRPCInferenceServiceStub(channel)
    steady: list[tuple[float, float, str]] = []
    stop = threading.Event()

    def one_channel() -> None:
        while not stop.is_set():
            steady.append(_call(stub, light))
            time.sleep(0.05)

    client = threading.Thread(target=one_channel, daemon=True)
    client.start()
    deadline = time.monotonic() + 60
    while len(steady) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    sigterm_at = time.monotonic()
    server.server.signal(signal.SIGTERM)
    delay_end = sigterm_at + DELAY_S
    time.sleep(0.3)
    assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=30).ready  # out of the endpoints, gRPC too
    time.sleep(max(0.0, delay_end - 0.3 - time.monotonic()))
    heavy_calls: list[tuple[float, float, str]] = []  # back to back from just before the listener closes

    def back_to_back() -> None:
        while True:
            outcome = _call(stub, heavy)
            heavy_calls.append(outcome)
            if outcome[2] != "OK":
                return

    # two senders: at any moment one of them has a call running, so one spans the moment gRPC stops taking calls
    senders = [threading.Thread(target=back_to_back, daemon=True) for _ in range(2)]
    for sender in senders:
        sender.start()
        time.sleep(0.01)
    refused_at = None
    while refused_at is None and time.monotonic() < delay_end + 60:
        start = time.monotonic()
        with grpc.insecure_channel(server.grpc_target) as fresh:  # ServerLive: answered without the model
            try:
                pbg.GRPCInferenceServiceStub(fresh).ServerLive(pb.ServerLiveRequest(), timeout=30)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    refused_at = start
        time.sleep(0.05)
    for sender in senders:
        sender.join(150)
    stop.set()
    client.join(150)
    channel.close()
    assert server.server.process.wait(60) == 0, server.server.log_tail()
    assert refused_at is not None, "gRPC never stopped taking calls"
    first_refusal = min([refused_at] + [start for start, _, outcome in heavy_calls if outcome != "OK"])
    in_flight = [o for o in heavy_calls if o[2] == "OK" and o[1] > first_refusal]
    assert in_flight, f"no heavy call admitted before gRPC stopped taking calls finished after it: {heavy_calls}"
    assert all(o[2] == "OK" for o in in_flight), in_flight
    assert {o[2] for o in heavy_calls} <= {"OK", "UNAVAILABLE"}, heavy_calls
    assert all(o[2] == "OK" for o in steady if o[0] < delay_end), [o for o in steady if o[2] != "OK"]
    assert {o[2] for o in steady} <= {"OK", "UNAVAILABLE"}, sorted({o[2] for o in steady})
