"""Small protocol helpers shared by the conformance tests: requests, response parsing, checks."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

import httpx
import numpy as np

TIMEOUT = httpx.Timeout(60.0, connect=5.0)
# Tolerance for comparing floats (parity, batch vs alone, V1 vs V2...): set from --atol by conftest.py.
# 1e-4 for float32 (the CPU default); a GPU run in float16 (dtype auto) needs about 5e-3.
ATOL = 1e-4
JSON = {"Content-Type": "application/json"}

TEXTS = [
    "A cat sits on the mat.",
    "A kitten is sitting on a rug.",
    "The stock market fell sharply after the announcement.",
    "Serving transformer models behind KServe.",
]


def client(base_url: str, timeout: httpx.Timeout | float = TIMEOUT) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=timeout)


# --------------------------------------------------------------------------------------------
# request bodies


def v1_body(texts: Sequence[Any]) -> dict:
    return {"instances": list(texts)}


def v2_body(texts: Sequence[Any], name: str = "text", request_id: str | None = None) -> dict:
    body: dict = {
        "inputs": [{"name": name, "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def v1_predict(http: httpx.Client, model: str, texts: Sequence[Any]) -> httpx.Response:
    return http.post(f"/v1/models/{model}:predict", json=v1_body(texts))


def v2_infer(http: httpx.Client, model: str, texts: Sequence[Any], **kw) -> httpx.Response:
    return http.post(f"/v2/models/{model}/infer", json=v2_body(texts, **kw))


def openai_embeddings(http: httpx.Client, model: str, texts: Sequence[str] | str) -> httpx.Response:
    return http.post("/openai/v1/embeddings", json={"model": model, "input": texts, "encoding_format": "float"})


# --------------------------------------------------------------------------------------------
# response parsing


def ok_json(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: {resp.text[:500]}"
    return resp.json()


def v1_predictions(resp: httpx.Response) -> list:
    body = ok_json(resp)
    assert isinstance(body, dict) and "predictions" in body, f"no 'predictions' in V1 response: {str(body)[:300]}"
    return body["predictions"]


def v1_embeddings(resp: httpx.Response) -> np.ndarray:
    """V1 predictions of an embedding model as a [N, H] float array.

    Accepts the two shapes a runtime may use per item: a bare vector, or {"embedding": [...]}.
    """
    rows = []
    for item in v1_predictions(resp):
        if isinstance(item, dict):
            item = item.get("embedding", item.get("embeddings"))
        rows.append(item)
    return np.asarray(rows, dtype=np.float64)


def v2_outputs(resp: httpx.Response) -> dict[str, np.ndarray]:
    body = ok_json(resp)
    assert "outputs" in body and body["outputs"], f"no 'outputs' in V2 response: {str(body)[:300]}"
    out = {}
    for o in body["outputs"]:
        assert {"name", "shape", "datatype", "data"} <= set(o), f"incomplete V2 output tensor: {list(o)}"
        data = o["data"]
        if o["datatype"] == "BYTES":
            out[o["name"]] = np.asarray(data, dtype=object).reshape(o["shape"])
        else:
            arr = np.asarray(data, dtype=np.float64)
            assert arr.size == math.prod(o["shape"]), f"{o['name']}: {arr.size} values for shape {o['shape']}"
            out[o["name"]] = arr.reshape(o["shape"])
    return out


def v2_single_output(resp: httpx.Response) -> np.ndarray:
    outs = v2_outputs(resp)
    numeric = {k: v for k, v in outs.items() if v.dtype != object}
    assert len(numeric) >= 1, f"no numeric output in {list(outs)}"
    for preferred in ("embeddings", "embedding", "logits", "scores", "probabilities"):
        if preferred in numeric:
            return numeric[preferred]
    return next(iter(numeric.values()))


def openai_vectors(body: dict) -> np.ndarray:
    assert body.get("object") == "list", f"OpenAI embeddings object is {body.get('object')!r}"
    data = sorted(body["data"], key=lambda d: d["index"])
    return np.asarray([d["embedding"] for d in data], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# checks


def assert_embeddings(arr: np.ndarray, n: int, dim: int | None) -> None:
    assert arr.ndim == 2 and arr.shape[0] == n, f"expected {n} vectors, got shape {arr.shape}"
    if dim is not None:
        assert arr.shape[1] == dim, f"expected dimension {dim}, got {arr.shape[1]}"
    assert np.isfinite(arr).all(), "embedding holds NaN or inf"
    assert (np.abs(arr).sum(axis=1) > 0).all(), "an embedding is all zeros"


def assert_json_error(resp: httpx.Response, lo: int = 400, hi: int = 499) -> dict:
    """A rejected request: status in [lo, hi] and a JSON object body with a string "error"."""
    where = f"{resp.request.method} {resp.request.url.path}"
    assert lo <= resp.status_code <= hi, f"{where}: expected {lo}-{hi}, got {resp.status_code}: {resp.text[:300]!r}"
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise AssertionError(f"{where} -> {resp.status_code}: body is not JSON: {resp.text[:300]!r}") from None
    assert isinstance(body, dict) and "error" in body, f"{where} -> {resp.status_code}: no 'error' key: {str(body)[:300]}"
    err = body["error"]
    if resp.request.url.path.startswith("/openai/") and isinstance(err, dict):
        # The OpenAI routes answer in OpenAI's own error shape, which its clients parse:
        # {"error": {"message": "...", "type": "...", "code": ...}}
        assert isinstance(err.get("message"), str) and err["message"], f"{where}: OpenAI error without a message: {err!r}"
        return {"error": err["message"], "openai_error": err}
    assert isinstance(err, str) and err, f"{where}: 'error' is not a non-empty string: {err!r}"
    return body


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_close(a: np.ndarray, b: np.ndarray, atol: float | None = None, what: str = "") -> None:
    atol = ATOL if atol is None else atol
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shapes differ {a.shape} vs {b.shape}"
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert diff <= atol, f"{what}: max abs difference {diff:.3g} > {atol}"


def assert_same_json(a: Any, b: Any, atol: float | None = None, what: str = "", strings: bool = True,
                     path: str = "$") -> None:
    """Two JSON values have the same structure: the same keys, list lengths and types at every path; equal strings
    (unless `strings` is false), integers and booleans; floats within atol. Ints and floats are both numbers, so a
    float that happens to be whole (an exact 1.0 score) is not a difference."""
    atol = ATOL if atol is None else atol
    where = f"{what}: at {path}" if what else path
    if isinstance(a, dict) and isinstance(b, dict):
        assert list(a) == list(b), f"{where}: keys differ {list(a)} vs {list(b)}"
        for key in a:
            assert_same_json(a[key], b[key], atol, what, strings, f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths differ {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_json(x, y, atol, what, strings, f"{path}[{i}]")
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        assert a is b, f"{where}: {a!r} vs {b!r}"
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            assert a == b, f"{where}: {a} vs {b}"
        else:
            assert abs(a - b) <= atol, f"{where}: {a} vs {b} (atol {atol})"
    elif isinstance(a, str) and isinstance(b, str):
        assert a == b or not strings, f"{where}: {a!r} vs {b!r}"
    else:
        raise AssertionError(f"{where}: types differ {type(a).__name__} vs {type(b).__name__}")


def floats_in(obj: Any) -> Iterable[float]:
    """Every number in a nested JSON value, for parity checks on task-specific V1 predictions."""
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield float(obj)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            yield from floats_in(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from floats_in(v)


def strings_in(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k in sorted(obj):
            yield from strings_in(obj[k])
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from strings_in(v)
