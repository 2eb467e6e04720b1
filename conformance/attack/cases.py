"""Every reproduction of the security review (and issue 20's table) as a case: what it sends, what answer is
acceptable, and the cap on the answer's size. Each case's `run` returns the problems it saw (empty: passed); the
watchers (watch.py) judge liveness and RSS around it.

Always a problem: a 5xx (or gRPC INTERNAL / UNKNOWN), a request that gets no answer, an answer larger than its cap.
`pending` names a fix not yet in the tree: such a case is left out of the default run (ATTACK_PENDING=1 runs it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx

KIB, MIB = 1 << 10, 1 << 20
MAX_BYTES = MIB           # the runtimes' --max_request_bytes default
MAX_CONCURRENT = 512      # --max_concurrent_requests default
ANY_4XX = "4xx"           # any client error with a JSON body


@dataclass
class Case:
    id: str
    finding: str                       # the review's id (H1..L9) or "issue" (issue 20's table)
    needs: str                         # minilm | fill_mask | rerank | generative | triton
    run: Callable[..., list[str]]      # run(dep) -> problems
    rss_bound_mb: float = 300.0        # the pod's RSS may grow this much during the case (local target)
    runtimes: tuple[str, ...] = ("huggingface", "triton")
    pending: str = ""                  # whose fix this waits on; empty: in the default run


# --- plain HTTP ---------------------------------------------------------------------------------------------------

def j(obj) -> bytes:
    return json.dumps(obj).encode()


def send(dep, method: str, path: str, body: bytes | Iterable[bytes] | None = None, *, expect=ANY_4XX,
         cap: int = 64 * KIB, content_type: str | None = "application/json", headers: dict | None = None,
         timeout: float = 120.0) -> list[str]:
    """One request; the answer is read up to its cap (never decoded whole). Problems: a 5xx, no answer, a status
    not in `expect` (a tuple, or ANY_4XX: a 4xx with a JSON error), more than `cap` bytes."""
    path = path.format(model=dep.model_name)
    all_headers = {**({"content-type": content_type} if content_type else {}), **(headers or {})}
    what = f"{method} {path}"
    try:
        with httpx.Client(base_url=dep.http_url, timeout=timeout) as http, \
                http.stream(method, path, content=body, headers=all_headers) as response:
            size, head = 0, b""
            for chunk in response.iter_bytes():
                size += len(chunk)
                head = head or chunk[:300]
                if size > cap:
                    break
    except httpx.HTTPError as exc:
        return [f"{what}: no answer ({type(exc).__name__}: {exc})"[:300]]
    status = response.status_code
    problems = []
    if status >= 500:
        problems.append(f"{what}: {status} {head[:200]!r}")
    elif expect == ANY_4XX:
        if not 400 <= status < 500:
            problems.append(f"{what}: {status}, wanted a 4xx")
        elif not head.lstrip().startswith(b"{") or b"error" not in head:
            problems.append(f"{what}: {status} without a JSON error: {head[:200]!r}")
    elif status not in expect:
        problems.append(f"{what}: {status}, wanted one of {expect}: {head[:200]!r}")
    if size > cap:
        problems.append(f"{what}: answer over its cap of {cap} bytes")
    return problems


def probe(method: str, path: str, body=None, **kw) -> Callable:
    """A one-request case; a callable body is built per deployment: body(dep)."""
    return lambda dep: send(dep, method, path, body(dep) if callable(body) else body, **kw)


def probes(*calls: Callable) -> Callable:
    return lambda dep: [p for call in calls for p in call(dep)]


def chunked(data: bytes, size: int = 64 * KIB) -> Callable[..., Iterable[bytes]]:
    """A body sent with Transfer-Encoding: chunked (no content-length to refuse it by)."""
    return lambda dep: (data[i:i + size] for i in range(0, len(data), size))


def host_port(dep) -> tuple[str, int]:
    url = urlparse(dep.http_url)
    return url.hostname, url.port or 80


def raw_status(sock: socket.socket, timeout: float) -> str:
    """The status line of the answer on a raw socket ('' when none came)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data.split(b"\r\n", 1)[0].decode("latin-1")


# --- the review's bodies ------------------------------------------------------------------------------------------

DOTS = j({"inputs": "." * 1_040_000})                                  # H2: about 1M tokens from 1 MiB
BIG_V1 = j({"instances": ["word " * 3200] * 64})                       # H4: 64 texts, 204k words, ~1 MiB
DEEP = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"          # L1 / issue: 100k-deep JSON
DEEP_V1 = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
LONE = '"\\ud800"'                                                      # a lone surrogate, as a JSON escape
OVER_LIMIT = b'{"inputs": "' + b"a" * (2 * MAX_BYTES) + b'"}'          # L1: chunked over-limit body


def v2_deep_data(levels: int = 900) -> bytes:
    return ('{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": '
            + "[" * levels + '"a"' + "]" * levels + "}]}").encode()


def v2_binary(header: dict, payload: bytes) -> tuple[bytes, int]:
    head = j(header)
    return head + payload, len(head)


def binary_probe(header: dict | bytes, payload: bytes, length: str | None = None) -> Callable:
    def run(dep) -> list[str]:
        head = header if isinstance(header, bytes) else j(header)
        return send(dep, "POST", "/v2/models/{model}/infer", head + payload, content_type="application/octet-stream",
                    headers={"inference-header-content-length": length if length is not None else str(len(head))})
    return run


def bytes_tensor(strings: list[bytes]) -> bytes:
    return b"".join(len(s).to_bytes(4, "little") + s for s in strings)


# --- cases that need more than one request ------------------------------------------------------------------------

def slow_readers(n: int = 40) -> Callable:
    """H2's slow-reader variant: n connections send the 1 MiB /tokenize body with a 4 KiB receive buffer and do not
    read; then each must have an answer waiting (its status line), and they close."""
    def run(dep) -> list[str]:
        host, port = host_port(dep)
        head = (b"POST /tokenize HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                % len(DOTS))
        socks, problems = [], []
        try:
            for _ in range(n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(60)
                s.connect((host, port))
                s.sendall(head + DOTS)
                socks.append(s)
            time.sleep(2.0)  # the slow readers hold their answers; the watchers measure meanwhile
            for s in socks:
                line = raw_status(s, 60)
                if not line.startswith("HTTP/1.1 ") or line[9:10] == "5":
                    problems.append(f"slow reader: {line or 'no answer'}")
        finally:
            for s in socks:
                s.close()
        return sorted(set(problems))
    return run


def slowloris(n: int = MAX_CONCURRENT, within_s: float = 60.0) -> Callable:
    """M2: n uploads that never finish; a normal POST must still be served (200) within `within_s`, at once or once a
    body deadline frees the slots, not refused with 429 for as long as the uploads last."""
    def run(dep) -> list[str]:
        host, port = host_port(dep)
        socks, problems = [], []
        head = (f"POST /v1/models/{dep.model_name}:predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: 100000\r\n\r\n{{").encode()
        try:
            for _ in range(n):
                s = socket.create_connection((host, port), timeout=30)
                s.sendall(head)
                socks.append(s)
            deadline, last = time.monotonic() + within_s, None
            with httpx.Client(base_url=dep.http_url, timeout=30) as http:
                while time.monotonic() < deadline:
                    try:
                        last = http.post(f"/v1/models/{dep.model_name}:predict", json={"instances": ["hi"]})
                    except httpx.HTTPError as exc:
                        problems.append(f"a normal POST beside {n} slow uploads: {type(exc).__name__}")
                        break
                    if last.status_code == 200 or last.status_code >= 500:
                        break
                    time.sleep(1.0)
            if last is not None and last.status_code != 200:
                problems.append(f"a normal POST beside {n} slow uploads: {last.status_code} {last.text[:200]}")
        finally:
            for s in socks:
                s.close()
        return problems
    return run


def grpc_flood(n: int = 600) -> Callable:
    """M1: n concurrent ModelInfer calls (HTTP answers 429 beyond --max_concurrent_requests): each is answered OK
    or RESOURCE_EXHAUSTED, nothing else."""
    def run(dep) -> list[str]:
        import grpc

        # the suite's V2 client (test_v2_grpc.py): kserve's copy of the same proto package cannot load beside it
        from tritonclient.grpc import service_pb2 as pb
        from tritonclient.grpc import service_pb2_grpc as pbg

        text = b"hello world"  # the review's 16 texts of 1500 words: minutes of CPU here; the point is concurrency
        request = pb.ModelInferRequest(model_name=dep.model_name, inputs=[pb.ModelInferRequest.InferInputTensor(
            name="text", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[text]))])

        async def flood():
            async with grpc.aio.insecure_channel(dep.grpc_target) as channel:
                stub = pbg.GRPCInferenceServiceStub(channel)
                return await asyncio.gather(*(stub.ModelInfer(request, timeout=300) for _ in range(n)),
                                            return_exceptions=True)

        codes: dict[str, int] = {}
        for result in asyncio.run(flood()):
            code = result.code().name if isinstance(result, grpc.RpcError) else (
                "OK" if isinstance(result, pb.ModelInferResponse) else type(result).__name__)
            codes[code] = codes.get(code, 0) + 1
        bad = {c: k for c, k in codes.items() if c not in ("OK", "RESOURCE_EXHAUSTED")}
        return [f"{n} concurrent ModelInfer: {codes}"] if bad or not codes.get("OK") else []
    return run


def grpc_raw_shape_mismatch(dep) -> list[str]:
    """L1: raw_input_contents holding 2 strings under shape [3] is INVALID_ARGUMENT, not INTERNAL."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pbg

    request = pb.ModelInferRequest(model_name=dep.model_name, inputs=[
        pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[3])],
        raw_input_contents=[bytes_tensor([b"one", b"two"])])
    with grpc.insecure_channel(dep.grpc_target) as channel:
        try:
            pbg.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.RpcError as exc:
            return [] if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else [f"ModelInfer: {exc.code().name}"]
    return ["ModelInfer with 2 strings under shape [3] was answered OK"]


FORGED = "2026-12-04 12:00:00.000 1 kserve INFO model minilm unloaded by admin"


def unknown_model_flood(dep) -> list[str]:
    """M6: 500 unknown-model GETs (8 at a time) are 404s, none refused, none a 5xx (each logged a traceback)."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: httpx.get(f"{dep.http_url}/v2/models/nope{i}/ready", timeout=60)
                                 .status_code, range(500)))
    return [] if set(statuses) == {404} else [f"500 unknown-model GETs: {sorted(set(statuses))}"]


def log_forging(dep) -> list[str]:
    """M6: a percent-encoded newline in a model name is a 404 and forges no log line (local: the pod's logs)."""
    problems = send(dep, "GET", "/v2/models/x%0a" + FORGED.replace(" ", "%20") + "/ready", content_type=None)
    if dep.control is not None and hasattr(dep.control, "logs"):
        forged = [line for name in dep.control.container_names
                  for line in dep.control.logs(name, tail=20000).splitlines() if line.startswith(FORGED)]
        if forged:
            problems.append(f"a client's model name forged a log line: {forged[0][:200]!r}")
    return problems


def abandoned_generation(dep) -> list[str]:
    """H3: 64 prompts x 4096 new tokens, abandoned by its client after 2 s; a 5-token /generate right after must be
    answered within 10 s (refused up front, or cancelled when the client left)."""
    body = j({"instances": ["translate this sentence"] * 64, "parameters": {"max_new_tokens": 4096}})
    problems: list[str] = []
    try:
        response = httpx.post(f"{dep.http_url}/v1/models/{dep.model_name}:predict", content=body,
                              headers={"content-type": "application/json"}, timeout=2.0)
        if response.status_code >= 500:
            problems.append(f"64 x 4096 tokens: {response.status_code} {response.text[:200]}")
    except httpx.TimeoutException:
        pass  # the client leaves
    start = time.monotonic()
    try:
        short = httpx.post(f"{dep.http_url}/generate", json={"inputs": "hello", "parameters": {"max_new_tokens": 5}},
                           timeout=120)
        took = time.monotonic() - start
        if short.status_code != 200 or took > 10.0:
            problems.append(f"a 5-token /generate after the abandoned request: {short.status_code} in {took:.1f} s")
    except httpx.HTTPError as exc:
        problems.append(f"a 5-token /generate after the abandoned request: {type(exc).__name__}")
    return problems


# statistics stays open by choice (read-only counts the launcher's drain reads; docs/reliability.md, M3)
TRITON_ADMIN_PATHS = ("/v2/systemsharedmemory/status", "/v2/cudasharedmemory/status", "/v2/logging",
                      "/v2/trace/setting", "/v2/models/{model}/config")


def triton_restricted(dep) -> list[str]:
    """M3: Triton's shared-memory, logging, trace and model-config APIs answer 403 without the launcher's admin
    header (any process in the pod reaches Triton's loopback ports)."""
    if not dep.triton_http_url:
        return ["no Triton HTTP address for this deployment"]
    problems = []
    for path in TRITON_ADMIN_PATHS:
        status = httpx.get(dep.triton_http_url + path.format(model=dep.triton_model_name), timeout=30).status_code
        if status != 403:
            problems.append(f"Triton GET {path}: {status}, wanted 403")
    return problems


# --- the cases ----------------------------------------------------------------------------------------------------

V1, V2 = "/v1/models/{model}:predict", "/v2/models/{model}/infer"
V2_LONE = ('{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [' + LONE + ']}]}').encode()
CHUNKED_ROUTES = ("/embed", "/predict", "/rerank", "/tokenize", "/decode", "/v1/rerank")

CASES = [
    # issue 20's table, tried by hand against make serve
    Case("tokenize-1mib-of-dots", "H2", "minilm",
         probe("POST", "/tokenize", DOTS, expect=(200, 413), cap=2 * MIB)),
    Case("v2-lone-surrogate", "issue", "minilm", probe("POST", V2, V2_LONE)),
    Case("tei-embed-lone-surrogate", "issue", "minilm", probe("POST", "/embed", b'{"inputs": ' + LONE.encode() + b"}")),
    Case("embed-and-root-100k-deep-json", "issue", "minilm",
         probes(probe("POST", "/embed", DEEP), probe("POST", "/", DEEP))),
    # H2's slow readers
    # (the review's 40 passed unstressed with liveness 0.94 s, too close to the bound for make test; 20: 0.04-0.09 s.
    # The RSS growth is mostly the tokenizer threads' first large allocations: 20 cold +381-394 MB, 40 cold +449 MB,
    # 40 after the 1 MiB /tokenize case +342-361 MB; before the fix each reader held 70-140 MB)
    Case("tokenize-20-slow-readers", "H2", "minilm", slow_readers(20), rss_bound_mb=500.0),
    Case("decode-250k-ids", "H2", "minilm",
         probe("POST", "/decode", j({"ids": [1012] * 170_000}), expect=(200, 413), cap=2 * MIB)),
    # H4: 1 MiB requests at once; a 1 MiB rerank query
    # (the review sent 20 at once: minutes of forward passes on 2 cores; on the loaded machine 2 at once already
    # ran past the transformer's 30 s deadline to Triton, a 503: one shows the tokenization cost under watch)
    Case("v1-1mib-request-of-64-long-texts", "H4", "minilm",
         probe("POST", V1, BIG_V1, expect=(200,), cap=2 * MIB), rss_bound_mb=600.0),
    Case("rerank-1mib-query-64-documents", "H4", "rerank",
         probe("POST", "/v1/rerank", j({"query": "word " * 200_000, "documents": ["a"] * 64}),
               expect=(200, 413), cap=64 * KIB)),
    # H1: fill-mask candidates and logits
    Case("fill-mask-64x60-masks-top-k-100", "H1", "fill_mask",
         probe("POST", V1, j({"instances": [" ".join(["[MASK]"] * 60)] * 64, "parameters": {"top_k": 100}}),
               expect=(200, 400, 413, 422), cap=4 * MIB)),
    Case("fill-mask-64-long-texts-one-mask", "H1", "fill_mask",
         probe("POST", V1, j({"instances": ["word " * 500 + "[MASK]"] * 64}), expect=(200, 400, 413, 422),
               cap=4 * MIB)),
    # H3: generation
    Case("generation-64x4096-abandoned", "H3", "generative", abandoned_generation, runtimes=("huggingface",)),
    Case("generate-nan-parameters", "L1", "generative",
         probes(probe("POST", "/generate", b'{"inputs": "hi", "parameters": {"repetition_penalty": NaN}}'),
                probe("POST", "/generate", b'{"inputs": "hi", "parameters": {"temperature": NaN}}')),
         runtimes=("huggingface",)),
    Case("generate-lone-surrogate", "L1", "generative",
         probe("POST", "/generate", b'{"inputs": ' + LONE.encode() + b"}"), runtimes=("huggingface",)),
    Case("chat-part-with-non-string-text", "L1", "generative",
         probe("POST", "/openai/v1/chat/completions",
               lambda dep: j({"model": dep.model_name,
                              "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]})),
         runtimes=("huggingface",)),
    Case("generate-900k-stop-string", "L9", "generative",
         probe("POST", "/generate", j({"inputs": "hi", "parameters": {"stop": ["x" * 900_000]}})),
         runtimes=("huggingface",)),
    # M1: gRPC
    Case("grpc-600-concurrent-model-infer", "M1", "minilm", grpc_flood(600), rss_bound_mb=600.0),
    Case("grpc-raw-bytes-shape-mismatch", "L1", "minilm", grpc_raw_shape_mismatch),
    # M2: slow uploads hold the backpressure slots
    Case("slowloris-512-uploads", "M2", "minilm", slowloris(MAX_CONCURRENT)),
    # M6: log forging and flooding
    Case("model-name-log-forging", "M6", "minilm", log_forging),
    Case("500-unknown-model-gets", "M6", "minilm", unknown_model_flood),
    # L1: the rest of the 500 table
    Case("lone-surrogate-every-route", "L1", "minilm", probes(
        probe("POST", "/", b'{"inputs": ' + LONE.encode() + b"}"),
        probe("POST", "/openai/v1/embeddings", lambda dep: f'{{"model": "{dep.model_name}", "input": {LONE}}}'.encode()),
        probe("POST", V1, ('{"instances": [' + LONE + "]}").encode(), content_type="text/plain"))),
    Case("deep-json-every-route", "L1", "minilm", probes(
        probe("POST", "/v1/rerank", b'{"query": "q", "documents": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        probe("POST", "/rerank", b'{"query": "q", "texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        probe("POST", V1, DEEP_V1, content_type="text/plain"),
        probe("POST", V2, DEEP, content_type="text/plain"),
        probe("POST", V2, v2_deep_data(900)))),
    Case("malformed-v2-binary", "L1", "minilm", probes(
        binary_probe(b"{}", b"", length="2"),
        binary_probe(b"{}", b"", length="abc"),
        binary_probe({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                                  "parameters": {"binary_data_size": 20}}]}, bytes_tensor([b"one"])),
        binary_probe({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3],
                                  "parameters": {"binary_data_size": 14}}]}, bytes_tensor([b"one", b"two"])))),
    Case("chunked-over-limit-bodies", "L1", "minilm", probes(
        *(probe("POST", route, chunked(OVER_LIMIT), expect=(413,)) for route in CHUNKED_ROUTES))),
    # M3: Triton's own APIs, from inside the pod
    Case("triton-admin-apis-restricted", "M3", "triton", triton_restricted, runtimes=("triton",)),
]
