"""Malformed and hostile requests: each gets a 4xx JSON error with an "error" key, and the
server keeps serving (a good request succeeds right after each one)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from conformance import protocol as P

pytestmark = pytest.mark.bad_input

V1 = "/v1/models/{model}:predict"
V2 = "/v2/models/{model}/infer"
OAI = "/openai/v1/embeddings"
COHERE = "/v2/embed"
SIM = "/similarity"
MAX_ITEMS = 64          # the runtimes' --max_request_items default
MAX_BYTES = 1 << 20     # the runtimes' --max_request_bytes default


@dataclass
class Case:
    id: str
    path: str
    body: bytes
    content_type: str = "application/json"
    status: tuple[int, ...] = ()   # accepted statuses; empty: any 4xx


def j(obj) -> bytes:
    return json.dumps(obj).encode()


def v2(name="text", datatype="BYTES", shape=(2,), data=("a", "b"), **extra) -> bytes:
    return j({"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": list(data)}], **extra})


CASES = [
    # V1
    Case("v1-malformed-json", V1, b'{"instances": ["a", '),
    Case("v1-not-json", V1, b"hello world"),
    Case("v1-empty-body", V1, b""),
    Case("v1-missing-instances", V1, j({"inputs_typo": ["a"]})),
    Case("v1-instances-not-a-list", V1, j({"instances": 42})),
    Case("v1-empty-list", V1, j({"instances": []})),
    Case("v1-non-string-items", V1, j({"instances": [1, 2, 3]})),
    Case("v1-null-item", V1, j({"instances": ["ok", None]})),
    Case("v1-nested-list-item", V1, j({"instances": [["a", "b"]]})),
    Case("v1-object-without-text", V1, j({"instances": [{"sentence": "a"}]})),
    Case("v1-body-is-a-list", V1, j(["a", "b"])),
    Case("v1-nan-literal", V1, b'{"instances": [NaN, Infinity]}'),
    Case("v1-too-many-items", V1, j({"instances": ["word"] * (MAX_ITEMS + 1)})),
    Case("v1-body-too-large", V1, j({"instances": ["lorem ipsum " * 2000] * 50}), status=(413,)),
    Case("v1-huge-single-string", V1, j({"instances": ["x" * (2 * MAX_BYTES)]}), status=(413,)),
    Case("v1-deeply-nested-json", V1, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    Case("v1-invalid-utf8", V1, b'{"instances": ["\xff\xfe\xfd"]}'),
    Case("v1-unknown-model", V1.replace("{model}", "no-such-model"), j({"instances": ["a"]}), status=(404,)),
    Case("v1-wrong-content-type", V1, b"instances=a&instances=b", content_type="application/x-www-form-urlencoded"),
    # V2
    Case("v2-missing-inputs", V2, j({"outputs": []})),
    Case("v2-empty-inputs", V2, j({"inputs": []})),
    Case("v2-wrong-input-name", V2, v2(name="txt")),
    Case("v2-wrong-datatype", V2, v2(datatype="FP32", data=(1.0, 2.0))),
    Case("v2-wrong-shape", V2, v2(shape=(3,))),
    Case("v2-non-string-data", V2, v2(data=(1, 2))),
    Case("v2-negative-shape", V2, v2(shape=(-1,))),
    Case("v2-too-many-items", V2, v2(shape=(MAX_ITEMS + 1,), data=["w"] * (MAX_ITEMS + 1))),
    Case("v2-unknown-model", V2.replace("{model}", "no-such-model"), v2(), status=(404,)),
    Case("v2-malformed-json", V2, b'{"inputs": [{"name": "text",'),
    # OpenAI
    Case("openai-missing-input", OAI, j({"model": "{model}"})),
    Case("openai-empty-input", OAI, j({"model": "{model}", "input": []})),
    Case("openai-non-string-items", OAI, j({"model": "{model}", "input": [{"text": "a"}]})),
    Case("openai-unknown-model", OAI, j({"model": "no-such-model", "input": "a"}), status=(404, 400)),
    Case("openai-too-many-items", OAI, j({"model": "{model}", "input": ["w"] * (MAX_ITEMS + 1)})),
    Case("openai-malformed-json", OAI, b'{"model": '),
    # Issue 20's reproductions of 500s (security review L1): a lone surrogate, 100k-deep nesting, on every family
    Case("v1-lone-surrogate-plain-text", V1, b'{"instances": ["a \\ud800"]}', content_type="text/plain"),
    Case("v1-deeply-nested-plain-text", V1, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         content_type="text/plain"),
    Case("v2-lone-surrogate", V2, b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], '
                                  b'"data": ["\\ud800"]}]}', status=(400,)),
    Case("v2-deeply-nested-data", V2, v2(shape=(1,), data=[json.loads("[" * 900 + '"a"' + "]" * 900)]),
         status=(400,)),
    Case("openai-lone-surrogate", OAI, b'{"model": "{model}", "input": "\\ud800"}', status=(400,)),
    Case("tei-embed-lone-surrogate", "/embed", b'{"inputs": "\\ud800"}', status=(422,)),
    Case("tei-embed-deeply-nested", "/embed", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         status=(422,)),
    Case("tei-embed-nan", "/embed", b'{"inputs": "a", "normalize": NaN}', status=(422,)),
    Case("hf-root-lone-surrogate", "/", b'{"inputs": "\\ud800"}', status=(400,)),
    Case("hf-root-deeply-nested", "/", b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", status=(400,)),
    # Cohere /v2/embed and TEI /similarity (issue 18), and the output types and Matryoshka dimensions of every family
    Case("cohere-embed-body-too-large", COHERE, j({"texts": ["x" * (2 * MAX_BYTES)]}), status=(413,)),
    Case("cohere-embed-lone-surrogate", COHERE, b'{"texts": ["\\ud800"]}'),
    Case("cohere-embed-deeply-nested", COHERE, b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    Case("cohere-embed-bad-embedding-types", COHERE, j({"texts": ["a"], "embedding_types": ["int4"]})),
    Case("cohere-embed-embedding-types-not-a-list", COHERE, j({"texts": ["a"], "embedding_types": "int8"})),
    Case("cohere-embed-output-dimension-zero", COHERE, j({"texts": ["a"], "output_dimension": 0})),
    Case("cohere-embed-output-dimension-too-wide", COHERE, j({"texts": ["a"], "output_dimension": 100_000})),
    Case("similarity-body-too-large", SIM, j({"inputs": {"source_sentence": "x" * (2 * MAX_BYTES),
                                                          "sentences": ["a"]}}), status=(413,)),
    Case("similarity-lone-surrogate", SIM, b'{"inputs": {"source_sentence": "\\ud800", "sentences": ["\\ud800"]}}'),
    Case("similarity-deeply-nested", SIM, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    Case("similarity-sentences-not-strings", SIM, j({"inputs": {"source_sentence": "a", "sentences": [1, None]}})),
    Case("tei-embed-dimensions-zero", "/embed", j({"inputs": "a", "dimensions": 0})),
    Case("tei-embed-dimensions-too-wide", "/embed", j({"inputs": "a", "dimensions": 100_000})),
    Case("openai-dimensions-zero", OAI, j({"model": "{model}", "input": "a", "dimensions": 0})),
    Case("openai-dimensions-too-wide", OAI, j({"model": "{model}", "input": "a", "dimensions": 100_000})),
    Case("v1-dimensions-not-an-integer", V1, j({"instances": ["a"], "parameters": {"dimensions": "8"}}),
         status=(400,)),
    Case("v1-embedding-types", V1, j({"instances": ["a"], "parameters": {"embedding_types": "int8"}}),
         status=(400,)),
    Case("v2-bad-embedding-types", V2, v2(parameters={"embedding_types": "int4,float"}), status=(400,)),
    Case("v2-base64-embedding-type", V2, v2(parameters={"embedding_types": "base64"}), status=(400,)),
    Case("v2-dimensions-too-wide", V2, v2(parameters={"dimensions": 100_000}), status=(400,)),
]

# Valid but unusual text: either served (200, one finite vector per item) or refused with a 4xx
# JSON error; never a 5xx, never a dropped connection.
EDGE_TEXTS = {
    "empty-string": [""],
    "whitespace-only": ["   \t\n  "],
    "nul-and-control-chars": ["a\x00b\x01c\x7f"],
    "zero-width-and-bom": ["\ufeff\u200b\u200c\u200d"],
    "rtl-and-combining": ["\u202eabc\u202c e\u0301\u0301\u0301 \u05e9\u05dc\u05d5\u05dd"],
    "emoji-zwj-sequences": ["👩‍👩‍👧‍👦🏳️‍🌈" * 50],
    "lone-surrogate-escape": None,  # sent as raw JSON below: "\ud800"
    "astral-plane": ["𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀 🀄"],
    "very-long-word": ["a" * 100_000],
}


def _good(http, model):
    emb = P.v1_embeddings(P.v1_predict(http, model, ["still serving?"]))
    assert emb.shape[0] == 1 and np.isfinite(emb).all()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rejected_with_json_error(minilm, case):
    path = case.path.replace("{model}", minilm.model_name)
    body = case.body.replace(b"{model}", minilm.model_name.encode())
    with minilm.http() as http:
        try:
            r = http.post(path, content=body, headers={"Content-Type": case.content_type})
        except httpx.TransportError as exc:
            pytest.fail(f"{case.id}: connection failed instead of a 4xx answer: {exc!r}")
        _assert_error(r)
        if case.status:
            assert r.status_code in case.status, f"{case.id}: expected {case.status}, got {r.status_code}"
        _good(http, minilm.model_name)


def _assert_error(r: httpx.Response) -> None:
    """A 4xx JSON error: {"error": "..."}, or on the OpenAI routes and Cohere's /v2/embed (whose errors take the
    shape of the Cohere-style /v1/rerank) {"error": {"message": "...", ...}}."""
    if r.request.url.path != COHERE:
        P.assert_json_error(r)
        return
    assert 400 <= r.status_code <= 499, f"{COHERE}: expected a 4xx, got {r.status_code}: {r.text[:300]!r}"
    message = r.json()["error"]["message"]
    assert isinstance(message, str) and message, r.text[:300]



@pytest.mark.parametrize("name", list(EDGE_TEXTS))
def test_unicode_and_edge_texts(minilm, name):
    with minilm.http() as http:
        if EDGE_TEXTS[name] is None:
            body = b'{"instances": ["abc \\ud800 def"]}'
            n = 1
        else:
            body = j(P.v1_body(EDGE_TEXTS[name]))
            n = len(EDGE_TEXTS[name])
        r = http.post(f"/v1/models/{minilm.model_name}:predict", content=body,
                      headers={"Content-Type": "application/json"})
        if r.status_code == 200:
            P.assert_embeddings(P.v1_embeddings(r), n, minilm.embedding_dim)
        else:
            P.assert_json_error(r)
        _good(http, minilm.model_name)
