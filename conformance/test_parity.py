"""Both runtimes give the same answers for the same inputs: the same JSON (keys, order, shapes, types, strings),
floats within --atol (default 1e-4); the same status code for the same bad request."""

import json

import pytest

from conformance import protocol as P

pytestmark = pytest.mark.parity

PARITY_TEXTS = P.TEXTS + [
    "x",
    "Ünïcödé, emoji 🤗 and 中文 text in one line.",
    "   leading and trailing spaces   ",
    " ".join(["a long sentence that goes past the model's maximum sequence length"] * 80),
]


def _named(body, name: str):
    """The body with the served model's name replaced, so two deployments with different names compare equal."""
    if isinstance(body, dict):
        return {k: ("<model>" if k in ("model_name", "model") and v == name else _named(v, name))
                for k, v in body.items()}
    if isinstance(body, list):
        return [_named(v, name) for v in body]
    return body


def test_v1(pair):
    a, b = pair
    with a.http() as ha, b.http() as hb:
        ra = P.ok_json(P.v1_predict(ha, a.model_name, PARITY_TEXTS))
        rb = P.ok_json(P.v1_predict(hb, b.model_name, PARITY_TEXTS))
    assert len(ra["predictions"]) == len(PARITY_TEXTS)
    P.assert_same_json(ra, rb, P.ATOL, f"V1 {a.id} vs {b.id}")


def test_v2_rest(pair):
    a, b = pair
    with a.http() as ha, b.http() as hb:
        ra = P.ok_json(P.v2_infer(ha, a.model_name, PARITY_TEXTS, request_id="parity-1"))
        rb = P.ok_json(P.v2_infer(hb, b.model_name, PARITY_TEXTS, request_id="parity-1"))
    P.assert_same_json(_named(ra, a.model_name), _named(rb, b.model_name), P.ATOL, "V2 response")


def test_openai(pair):
    a, b = pair
    body = {"model": None, "input": PARITY_TEXTS, "encoding_format": "float"}
    with a.http() as ha, b.http() as hb:
        ra = P.ok_json(ha.post("/openai/v1/embeddings", json={**body, "model": a.model_name}))
        rb = P.ok_json(hb.post("/openai/v1/embeddings", json={**body, "model": b.model_name}))
    P.assert_same_json(_named(ra, a.model_name), _named(rb, b.model_name), P.ATOL, "OpenAI embeddings")


BAD_REQUESTS = [
    ("POST", "/v1/models/{m}:predict", b"{not json"),
    ("POST", "/v1/models/{m}:predict", b'{"instances": []}'),
    ("POST", "/v1/models/{m}:predict", b'{"instances": [1, 2]}'),
    ("POST", "/v1/models/{m}:predict", b'{"inputs": ["no instances key"]}'),
    ("POST", "/v1/models/no-such-model:predict", b'{"instances": ["x"]}'),
    ("POST", "/v2/models/{m}/infer", b'{"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1]}]}'),
    ("POST", "/openai/v1/embeddings", b'{"model": "{m}", "input": []}'),
    ("POST", "/openai/v1/embeddings", b'{"model": "no-such-model", "input": "x"}'),
]


def test_bad_requests_get_the_same_status(pair):
    """Error parity: the same bad request is refused with the same status code and error shape by both."""
    a, b = pair
    with a.http() as ha, b.http() as hb:
        for method, path, body in BAD_REQUESTS:
            answers = []
            for http, dep in ((ha, a), (hb, b)):
                resp = http.request(method, path.format(m=dep.model_name), headers={"content-type": "application/json"},
                                    content=body.replace(b"{m}", dep.model_name.encode()))
                error = P.assert_json_error(resp)
                answers.append((resp.status_code, "openai_error" in error))
            assert answers[0] == answers[1], f"{method} {path} {body[:60]!r}: {a.id} {answers[0]} vs {b.id} {answers[1]}"


def test_metadata(pair):
    a, b = pair
    with a.http() as ha, b.http() as hb:
        ma = P.ok_json(ha.get(f"/v2/models/{a.model_name}"))
        mb = P.ok_json(hb.get(f"/v2/models/{b.model_name}"))
    strip = lambda m: sorted((t["name"], t["datatype"], tuple(t["shape"])) for t in m)  # noqa: E731
    assert strip(ma["inputs"]) == strip(mb["inputs"]), (ma["inputs"], mb["inputs"])
    assert strip(ma["outputs"]) == strip(mb["outputs"]), (ma["outputs"], mb["outputs"])


@pytest.mark.tasks
def test_tiny_tasks_v1(tiny_pair):
    """Classification, token classification and fill-mask answers agree between the runtimes."""
    a, b = tiny_pair
    texts = ["The food at the restaurant was delicious.", "John Smith lives in New York.",
             "Thank you very much for your help."]
    if "fill_mask" in a.id:
        texts = ["The food at the [MASK] was delicious.", "John Smith lives in New [MASK].",
                 "Paris is the [MASK] of France."]
    with a.http() as ha, b.http() as hb:
        ra = P.ok_json(P.v1_predict(ha, a.model_name, texts))
        rb = P.ok_json(P.v1_predict(hb, b.model_name, texts))
    assert len(ra["predictions"]) == len(texts)
    # labels of near-ties in random tiny models may flip in float16: strings are compared at float32 tolerance only
    P.assert_same_json(ra, rb, P.ATOL, f"V1 {a.task}", strings=P.ATOL <= 1e-4)


@pytest.mark.tasks
def test_tiny_tasks_v2(tiny_pair):
    a, b = tiny_pair
    texts = ["The cat sat on the mat.", "Emma visited her grandmother in Rome."]
    if "fill_mask" in a.id:
        texts = [t.replace("mat", "[MASK]").replace("Rome", "[MASK]") for t in texts]
    with a.http() as ha, b.http() as hb:
        ra = P.ok_json(P.v2_infer(ha, a.model_name, texts, request_id="parity-2"))
        rb = P.ok_json(P.v2_infer(hb, b.model_name, texts, request_id="parity-2"))
    # BYTES outputs hold JSON text (entities, candidates): compared parsed, so their floats get the tolerance
    P.assert_same_json(_parsed(_named(ra, a.model_name)), _parsed(_named(rb, b.model_name)), P.ATOL,
                       f"V2 {a.task}", strings=P.ATOL <= 1e-4)


def _parsed(body: dict) -> dict:
    for output in body.get("outputs", []):
        if output.get("datatype") == "BYTES":
            output["data"] = [_json_or_text(d) for d in output["data"]]
    return body


def _json_or_text(value):
    try:
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
    except ValueError:
        return value
