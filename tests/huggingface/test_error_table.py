"""The error table, walked on real servers: for every route family (kserve V1, V2 REST, V2 gRPC, OpenAI, TEI,
Hugging Face Inference, Cohere/Jina rerank) and every error kind a client can cause there, a real request, and the
status and body shape serving/error_shapes.py's table gives that kind on that family. Among them the inputs that
used to reach a 500 (security review L1): lone surrogates, NaN, 100k-deep nesting, malformed V2 binary bodies,
chunked bodies over the limit."""

import contextlib
import json
import struct
import threading

import grpc
import httpx
import pytest
from hfserve.serving import error_shapes
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

LONG = "the quick brown fox jumps over the lazy dog " * 60  # over MiniLM's 256 tokens and the tiny 64
DEEP = 100_000
LIMIT = 65536  # the guarded server's --max_request_bytes


@pytest.fixture(scope="module")
def minilm(start_huggingface_runtime, minilm_dir):
    return start_huggingface_runtime(minilm_dir, "minilm")


@pytest.fixture(scope="module")
def reranker(start_huggingface_runtime, tiny_models):
    return start_huggingface_runtime(tiny_models("rerank"), "reranker")


@pytest.fixture(scope="module")
def guarded(start_huggingface_runtime, tiny_models):
    """Small limits, and the repository routes to unload its model with (the last tests here do)."""
    return start_huggingface_runtime(tiny_models("rerank"), "guarded", "--max_concurrent_requests", "1",
                                     "--max_request_bytes", str(LIMIT), "--enable_repository_routes")


def escaped(value) -> bytes:
    """JSON with every non-ASCII character escaped, so a lone surrogate travels as the six characters \\ud800."""
    return json.dumps(value).encode()


def deep(key: str, extra: str = "") -> bytes:
    return ('{"%s": ' % key + "[" * DEEP + "]" * DEEP + extra + "}").encode()


def v2(texts, datatype="BYTES", parameters=None) -> dict:
    body = {"inputs": [{"name": "text", "datatype": datatype, "shape": [len(texts)], "data": texts}]}
    return {**body, "parameters": parameters} if parameters else body


def v2_binary(elements: list[bytes], shape: list[int], declared_size: int | None = None,
              header_length: str | None = None) -> tuple[bytes, dict]:
    """A V2 binary-extension request: JSON header, then the BYTES tensor (4-byte little-endian length + bytes)."""
    raw = b"".join(struct.pack("<I", len(e)) + e for e in elements)
    size = len(raw) if declared_size is None else declared_size
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape,
                                     "parameters": {"binary_data_size": size}}]}).encode()
    headers = {"inference-header-content-length": header_length or str(len(header)),
               "content-type": "application/octet-stream"}
    return header + raw, headers


JSON = {"content-type": "application/json"}
PLAIN = {"content-type": "text/plain"}
V1, V2 = "/v1/models/{m}:predict", "/v2/models/{m}/infer"

# (family, kind, server, path, request) ; request: {"json": ...} or {"content": ..., "headers": ...}
CASES = [
    # kserve V1
    ("kserve", "invalid_request", "minilm", V1, {"json": {"instances": 5}}),
    ("kserve", "invalid_request", "minilm", V1, {"content": escaped({"instances": ["\ud800"]}), "headers": JSON}),
    ("kserve", "invalid_json", "minilm", V1, {"content": b'{"instances": ["a"', "headers": PLAIN}),
    ("kserve", "invalid_json", "minilm", V1, {"content": escaped({"instances": ["\ud800"]}), "headers": PLAIN}),
    ("kserve", "invalid_json", "minilm", V1, {"content": b'{"instances": ["a"], "parameters": {"x": NaN}}',
                                             "headers": PLAIN}),
    ("kserve", "invalid_json", "minilm", V1, {"content": deep("instances"), "headers": PLAIN}),
    ("kserve", "invalid_request", "minilm", V1, {"content": deep("instances"), "headers": JSON}),
    ("kserve", "input_too_long", "minilm", V1, {"json": {"instances": [LONG], "parameters": {"truncate": False}}}),
    ("kserve", "model_not_found", "minilm", "/v1/models/nope:predict", {"json": {"instances": ["a"]}}),
    ("kserve", "body_too_large", "guarded", V1, {"json": {"instances": ["a" * LIMIT]}}),
    # kserve V2 REST
    ("kserve", "invalid_request", "minilm", V2, {"json": v2([1.0], "FP32")}),
    ("kserve", "invalid_request", "minilm", V2, {"content": escaped(v2(["\ud800"])), "headers": JSON}),
    ("kserve", "invalid_request", "minilm", V2, {"content": deep("inputs"), "headers": JSON}),
    ("kserve", "invalid_request", "minilm", V2, {"json": {"inputs": [{  # under Python's recursion limit, over ours
        "name": "text", "datatype": "BYTES", "shape": [1], "data": json.loads("[" * 900 + '"a"' + "]" * 900)}]}}),
    ("kserve", "invalid_request", "minilm", V2, {"content": b"{}", "headers": {
        "inference-header-content-length": "2", "content-type": "application/octet-stream"}}),
    ("kserve", "invalid_request", "minilm", V2, {"content": b"{}", "headers": {
        "inference-header-content-length": "abc", "content-type": "application/octet-stream"}}),
    ("kserve", "invalid_request", "minilm", V2, dict(zip(("content", "headers"),
                                                         v2_binary([b"a"], [1], header_length="100000")))),
    ("kserve", "invalid_request", "minilm", V2, dict(zip(("content", "headers"),
                                                         v2_binary([b"abc", b"de"], [2], declared_size=100)))),
    ("kserve", "invalid_request", "minilm", V2, dict(zip(("content", "headers"), v2_binary([b"a", b"b"], [3])))),
    ("kserve", "invalid_request", "minilm", V2, dict(zip(("content", "headers"), v2_binary([b"\xed\xa0\x80"], [1])))),
    ("kserve", "invalid_request", "minilm", "/v2/models/{m}/versions/1/infer", {"json": v2(["a"])}),
    ("kserve", "input_too_long", "minilm", V2, {"json": v2([LONG], parameters={"truncate": False})}),
    ("kserve", "model_not_found", "minilm", "/v2/models/nope/infer", {"json": v2(["a"])}),
    ("kserve", "body_too_large", "guarded", V2, {"json": v2(["a" * LIMIT])}),
    # OpenAI
    ("openai", "invalid_request", "minilm", "/openai/v1/embeddings", {"json": {"model": "minilm"}}),
    ("openai", "invalid_request", "minilm", "/openai/v1/embeddings", {"json": {"model": "minilm", "input": [[1]]}}),
    ("openai", "invalid_request", "minilm", "/openai/v1/embeddings", {"content": b"{not json", "headers": JSON}),
    ("openai", "invalid_request", "minilm", "/openai/v1/embeddings",
     {"content": escaped({"model": "minilm", "input": "\ud800"}), "headers": JSON}),
    ("openai", "invalid_request", "minilm", "/openai/v1/embeddings", {"content": deep("input"), "headers": JSON}),
    ("openai", "input_too_long", "minilm", "/openai/v1/embeddings",
     {"json": {"model": "minilm", "input": LONG, "truncate": False}}),
    ("openai", "wrong_task", "minilm", "/openai/v1/completions", {"json": {"model": "minilm", "prompt": "x"}}),
    ("openai", "model_not_found", "minilm", "/openai/v1/embeddings", {"json": {"model": "other", "input": "x"}}),
    ("openai", "body_too_large", "guarded", "/openai/v1/embeddings", {"json": {"model": "m", "input": "a" * LIMIT}}),
    ("openai", "body_too_large", "guarded", "/openai/v1/embeddings", {"chunked": {"model": "m", "input": "a" * LIMIT}}),
    # TEI
    ("tei", "invalid_request", "minilm", "/embed", {"json": {"inputs": [1, 2]}}),
    ("tei", "invalid_json", "minilm", "/embed", {"content": b"{not json", "headers": JSON}),
    ("tei", "invalid_json", "minilm", "/embed", {"content": escaped({"inputs": "\ud800"}), "headers": JSON}),
    ("tei", "invalid_json", "minilm", "/embed", {"content": b'{"inputs": "x", "normalize": NaN}', "headers": JSON}),
    ("tei", "invalid_json", "minilm", "/embed", {"content": deep("inputs"), "headers": JSON}),
    ("tei", "invalid_json", "minilm", "/tokenize", {"content": b'{"inputs": "\xff"}', "headers": JSON}),
    ("tei", "input_too_long", "minilm", "/embed", {"json": {"inputs": LONG, "truncate": False}}),
    ("tei", "wrong_task", "minilm", "/rerank", {"json": {"query": "q", "texts": ["a"]}}),
    ("tei", "wrong_task", "reranker", "/embed", {"json": {"inputs": "x"}}),
    ("tei", "body_too_large", "guarded", "/embed", {"json": {"inputs": "a" * LIMIT}}),
    ("tei", "body_too_large", "guarded", "/embed", {"chunked": {"inputs": "a" * LIMIT}}),
    # Hugging Face Inference API / TGI
    ("hf", "invalid_request", "minilm", "/", {"json": {"inputs": 5}}),
    ("hf", "invalid_json", "minilm", "/", {"content": b"{not json", "headers": JSON}),
    ("hf", "invalid_json", "minilm", "/", {"content": escaped({"inputs": "\ud800"}), "headers": JSON}),
    ("hf", "invalid_json", "minilm", "/", {"content": deep("inputs"), "headers": JSON}),
    ("hf", "invalid_json", "minilm", "/", {"content": b'{"inputs": "x", "parameters": {"n": Infinity}}',
                                           "headers": JSON}),
    ("hf", "input_too_long", "minilm", "/", {"json": {"inputs": LONG, "parameters": {"truncate": False}}}),
    ("hf", "wrong_task", "minilm", "/generate", {"json": {"inputs": "x"}}),
    ("hf", "body_too_large", "guarded", "/", {"json": {"inputs": "a" * LIMIT}}),
    # Cohere / Jina rerank
    ("rerank", "invalid_request", "reranker", "/v1/rerank", {"json": {"query": "q", "documents": []}}),
    ("rerank", "invalid_json", "reranker", "/v1/rerank", {"content": b"{not json", "headers": JSON}),
    ("rerank", "invalid_json", "reranker", "/v1/rerank",
     {"content": escaped({"query": "\ud800", "documents": ["a"]}), "headers": JSON}),
    ("rerank", "invalid_json", "reranker", "/openai/v1/rerank", {"content": deep("documents"), "headers": JSON}),
    ("rerank", "input_too_long", "reranker", "/v1/rerank",
     {"json": {"query": "q", "documents": [LONG], "truncate": False}}),
    ("rerank", "wrong_task", "minilm", "/v1/rerank", {"json": {"query": "q", "documents": ["a"]}}),
    ("rerank", "model_not_found", "reranker", "/v1/rerank", {"json": {"model": "other", "query": "q",
                                                                      "documents": ["a"]}}),
    ("rerank", "body_too_large", "guarded", "/v1/rerank", {"json": {"query": "a" * LIMIT, "documents": ["a"]}}),
]
# Kinds no request can cause on a family: kserve's routes name their model, so a missing one is model_not_found
# (never unavailable) and there is no route a task lacks; internal and not_implemented are no client's doing.
NOT_CAUSED = {"kserve": {"wrong_task", "unavailable"}, "openai": {"invalid_json", "unavailable"},
              "tei": {"model_not_found"}, "hf": {"model_not_found"}, "rerank": set()}
LATER = {"overloaded", "unavailable"}  # the last tests here, on the guarded server


def send(server, path: str, request: dict) -> httpx.Response:
    url = server.url + path.format(m=server.model_name)
    if "json" in request:
        return httpx.post(url, content=escaped(request["json"]), headers=JSON, timeout=120)
    if "chunked" in request:
        payload = escaped(request["chunked"])
        chunks = (payload[i:i + 8192] for i in range(0, len(payload), 8192))  # no Content-Length: chunked
        return httpx.post(url, content=chunks, headers=JSON, timeout=120)
    return httpx.post(url, content=request["content"], headers=request["headers"], timeout=120)


def assert_shaped(response: httpx.Response, name: str, kind: str) -> None:
    row = error_shapes.TABLES[name][kind]
    assert response.status_code == row.status, (name, kind, response.status_code, response.text[:300])
    assert "Traceback" not in response.text and "File \"" not in response.text
    body = response.json()
    if name in ("openai", "rerank"):
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code"}, body
        assert body["error"]["message"] and body["error"]["type"] == row.label and body["error"]["code"] == row.status
    elif name in ("tei", "hf"):
        assert set(body) == {"error", "error_type"} and body["error"] and body["error_type"] == row.label, body
    else:
        assert set(body) == ({"error", "error_type"} if row.label else {"error"}), body
        assert isinstance(body["error"], str) and body["error"]


def _id(case) -> str:
    family, kind, server, path, request = case
    what = next(iter(request))
    detail = request.get("headers", {}).get("inference-header-content-length") or ""
    return f"{family}-{kind}-{path.strip('/').split('/')[0] or 'root'}-{what}{detail}-{CASES.index(case)}"


def test_the_cases_walk_the_whole_table():
    covered = {(family, kind) for family, kind, *_ in CASES}
    for name, table in error_shapes.TABLES.items():
        wanted = set(table) - {"internal", "not_implemented"} - NOT_CAUSED[name] - LATER
        assert {(name, kind) for kind in wanted} <= covered, (name, wanted - {k for f, k in covered if f == name})
    for family, kind, _, path, _ in CASES:
        assert error_shapes.family(path.format(m="m")) == family, path


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_each_error_gets_its_familys_status_and_shape(case, request):
    family, kind, server_name, path, sent = case
    server = request.getfixturevalue(server_name)
    assert_shaped(send(server, path, sent), family, kind)


def test_the_servers_still_serve_after_all_that(minilm, reranker):
    assert httpx.post(f"{minilm.url}/embed", json={"inputs": "still serving"}, timeout=60).status_code == 200
    assert httpx.post(f"{reranker.url}/v1/rerank", json={"query": "q", "documents": ["a"]},
                      timeout=60).status_code == 200


# --- gRPC: the same kinds, as status codes -----------------------------------------------------------------------

def grpc_infer(server, model: str, contents: list[bytes], shape: list[int], datatype="BYTES", parameters=None,
               raw: list[bytes] | None = None):
    """ModelInfer of one "text" tensor: `contents` packed as one raw_input_contents entry, or `raw` as given."""
    tensor = pb.ModelInferRequest().InferInputTensor(name="text", datatype=datatype, shape=shape)
    packed = [b"".join(struct.pack("<I", len(c)) + c for c in contents)]
    request = pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=packed if raw is None else raw)
    for key, value in (parameters or {}).items():
        request.parameters[key].bool_param = value
    with grpc.insecure_channel(server.grpc_target) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def test_grpc_maps_the_same_kinds(minilm, guarded):
    cases = [
        ("invalid_request", minilm, "minilm", [b"a"], [1], "FP32", None),
        ("invalid_request", minilm, "minilm", [b"a", b"b"], [3], "BYTES", None),  # shape != element count
        ("invalid_request", minilm, "minilm", [b"\xed\xa0\x80"], [1], "BYTES", None),  # a surrogate, not UTF-8
        ("input_too_long", minilm, "minilm", [LONG.encode()], [1], "BYTES", {"truncate": False}),
        ("model_not_found", minilm, "nope", [b"a"], [1], "BYTES", None),
        ("body_too_large", guarded, "guarded", [b"a" * LIMIT], [1], "BYTES", None),
    ]
    for kind, server, model, contents, shape, datatype, parameters in cases:
        code, details = grpc_infer(server, model, contents, shape, datatype, parameters)
        assert code == error_shapes.GRPC_CODES[kind], (kind, code, details)
        assert details and "Traceback" not in details
    code, details = grpc_infer(minilm, "minilm", [], [1], raw=[b"\x01\x00\x00\x00a", b"more"])  # 2 raw, 1 input
    assert code == error_shapes.GRPC_CODES["invalid_request"] and "raw_input_contents" in details, (code, details)
    code, details = grpc_infer(minilm, "minilm", [], [1], raw=[b"\xff\xff\xff\x7fab"])  # length > bytes sent
    assert code == error_shapes.GRPC_CODES["invalid_request"], (code, details)
    assert grpc_infer(minilm, "minilm", [b"fine"], [1])[0] == grpc.StatusCode.OK


# --- the guarded server: the log, overloaded, then unavailable (its model unloaded) -----------------------------------

def test_refusals_log_one_escaped_line_and_no_traceback(guarded):
    """Security review M6: a 4xx is one log line, not a traceback, and client text cannot start a line of its own."""
    forged = "2026-12-04 12:00:00.000 1 kserve INFO model guarded unloaded by admin"
    before = guarded.server.log_path.read_text(errors="replace")
    assert httpx.get(f"{guarded.url}/v2/models/x%0a{forged.replace(' ', '%20')}/ready", timeout=30).status_code == 404
    assert httpx.post(f"{guarded.url}/v1/models/x%0a{forged.replace(' ', '%20')}:predict", json={"instances": ["a"]},
                      timeout=30).status_code == 404
    assert httpx.post(f"{guarded.url}/v1/models/guarded:predict", json={"instances": 5}, timeout=30).status_code == 400
    assert grpc_infer(guarded, f"x\n{forged}", [b"a"], [1])[0] == grpc.StatusCode.NOT_FOUND
    assert httpx.post(f"{guarded.url}/embed", content=b"{", headers=JSON, timeout=30).status_code == 422
    log = guarded.server.log_path.read_text(errors="replace")[len(before):]
    assert "Traceback" not in log, log[-3000:]
    assert not any(line.startswith(forged) for line in log.splitlines()), log[-3000:]
    assert log.count("refused") >= 5, log[-3000:]



@contextlib.contextmanager
def slot_kept_busy(server):
    """Clients sending 64-document reranks (under the body limit) back to back keep the server's one slot taken
    nearly all the time (a half-sent body no longer takes a slot: security review M2), so a probe soon meets it."""
    stop = threading.Event()
    body = {"query": LONG[:800], "texts": [LONG[:800]] * 64, "truncate": True}
    assert len(json.dumps(body)) < LIMIT

    def load():
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                client.post(f"{server.url}/rerank", json=body)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def test_overloaded_on_every_family(guarded):
    """While the one slot is taken, every other POST is refused at once, in its family's shape."""
    with slot_kept_busy(guarded):
        for family, path, body in (("kserve", V1.format(m="guarded"), {"instances": ["a"]}),
                                   ("kserve", V2.format(m="guarded"), v2(["a"])),
                                   ("openai", "/openai/v1/embeddings", {"model": "guarded", "input": "a"}),
                                   ("tei", "/rerank", {"query": "q", "texts": ["a"]}),
                                   ("hf", "/", {"inputs": "a"}),
                                   ("rerank", "/v1/rerank", {"query": "q", "documents": ["a"]})):
            for _ in range(200):  # until a probe arrives while the slot is taken
                response = httpx.post(guarded.url + path, json=body, timeout=30)
                if response.status_code == 429:
                    break
            assert_shaped(response, family, "overloaded")
            assert response.headers["retry-after"] == "1"
    for _ in range(50):
        if httpx.post(f"{guarded.url}/rerank", json={"query": "q", "texts": ["a"]}, timeout=30).status_code == 200:
            break
    else:
        raise AssertionError("the slot was not given back")


def test_unavailable_once_the_model_is_gone(guarded):
    assert httpx.post(f"{guarded.url}/v2/repository/models/guarded/unload", json={}, timeout=60).status_code == 200
    for family, path, body in (("tei", "/rerank", {"query": "q", "texts": ["a"]}), ("hf", "/", {"inputs": "a"}),
                               ("rerank", "/v1/rerank", {"query": "q", "documents": ["a"]})):
        assert_shaped(httpx.post(guarded.url + path, json=body, timeout=30), family, "unavailable")
    assert_shaped(httpx.post(guarded.url + V1.format(m="guarded"), json={"instances": ["a"]}, timeout=30),
                  "kserve", "model_not_found")
    assert_shaped(httpx.post(f"{guarded.url}/openai/v1/embeddings", json={"model": "guarded", "input": "a"},
                             timeout=30), "openai", "model_not_found")
