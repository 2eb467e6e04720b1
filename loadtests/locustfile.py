"""Locust users for embedding traffic over V1, V2 (Open Inference Protocol) and OpenAI.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless            # all protocols
    LOAD_PROTOCOLS=v1 locust -f loadtests/locustfile.py ...                               # one of them
    locust -f loadtests/locustfile.py --tags openai ...                                   # same, by tag

Every response is checked, not just its status: one vector per input text, of the expected
dimension (LOAD_DIM, default 384; 0 accepts any), holding finite floats only.

Environment: LOAD_MODEL (default minilm), LOAD_DIM, LOAD_PROTOCOLS (comma list of v1, v2, openai;
default all), LOAD_SHAPE (steady | step, default steady; see shapes.py), LOAD_MAX_ITEMS (largest
batch a request carries, default 8), LOAD_WAIT_MIN/LOAD_WAIT_MAX (think time in seconds).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from locust import FastHttpUser, between, tag, task  # noqa: E402

from loadtests.corpus import sample_batch  # noqa: E402
from loadtests.shapes import SHAPES  # noqa: E402

MODEL = os.environ.get("LOAD_MODEL", "minilm")
DIM = int(os.environ.get("LOAD_DIM", "384"))
MAX_ITEMS = int(os.environ.get("LOAD_MAX_ITEMS", "8"))
PROTOCOLS = {p.strip() for p in os.environ.get("LOAD_PROTOCOLS", "v1,v2,openai").split(",") if p.strip()}
WAIT = between(float(os.environ.get("LOAD_WAIT_MIN", "0.05")), float(os.environ.get("LOAD_WAIT_MAX", "0.25")))

# Exactly one LoadTestShape in this module's namespace: locust runs the first it finds.
_shape_name = os.environ.get("LOAD_SHAPE", "steady")
if _shape_name not in SHAPES:
    raise SystemExit(f"LOAD_SHAPE must be one of {sorted(SHAPES)}, not {_shape_name!r}")
Shape = type(f"{SHAPES[_shape_name].__name__}", (SHAPES[_shape_name],), {})

_seeds = itertools.count(1)


def check_vectors(vectors, n: int) -> str | None:
    """None when `vectors` is n finite vectors of dimension DIM, else what is wrong."""
    if not isinstance(vectors, list) or len(vectors) != n:
        return f"expected {n} vectors, got {len(vectors) if isinstance(vectors, list) else type(vectors).__name__}"
    for v in vectors:
        if not isinstance(v, list) or not v:
            return f"a vector is {type(v).__name__}"
        if DIM and len(v) != DIM:
            return f"dimension {len(v)} != {DIM}"
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
            return "non-finite or non-numeric value"
    return None


class _EmbeddingUser(FastHttpUser):
    abstract = True
    wait_time = WAIT

    def on_start(self):
        self.rng = random.Random(next(_seeds))

    def _post(self, name: str, path: str, payload: dict, extract, n: int):
        with self.client.post(path, json=payload, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            try:
                vectors = extract(resp.json())
            except Exception as exc:  # noqa: BLE001 - any malformed body is a failure
                resp.failure(f"unexpected body: {exc!r}")
                return
            problem = check_vectors(vectors, n)
            if problem:
                resp.failure(problem)
            else:
                resp.success()


def _v1_vectors(body):
    return [p.get("embedding", p) if isinstance(p, dict) else p for p in body["predictions"]]


def _v2_vectors(body):
    out = body["outputs"][0]
    n, dim = out["shape"][0], out["shape"][-1]
    data = out["data"]
    if len(data) != n * dim:
        raise ValueError(f"{len(data)} values for shape {out['shape']}")
    return [data[i * dim:(i + 1) * dim] for i in range(n)]


def _openai_vectors(body):
    return [d["embedding"] for d in sorted(body["data"], key=lambda d: d["index"])]


if "v1" in PROTOCOLS:
    class V1User(_EmbeddingUser):
        """KServe V1: POST /v1/models/{model}:predict {"instances": [...]}"""

        @tag("v1")
        @task
        def predict(self):
            texts = sample_batch(self.rng, MAX_ITEMS)
            self._post("v1 predict", f"/v1/models/{MODEL}:predict", {"instances": texts}, _v1_vectors, len(texts))


if "v2" in PROTOCOLS:
    class V2User(_EmbeddingUser):
        """Open Inference Protocol: POST /v2/models/{model}/infer with a BYTES "text" tensor"""

        @tag("v2")
        @task
        def infer(self):
            texts = sample_batch(self.rng, MAX_ITEMS)
            payload = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
            self._post("v2 infer", f"/v2/models/{MODEL}/infer", payload, _v2_vectors, len(texts))


if "openai" in PROTOCOLS:
    class OpenAIUser(_EmbeddingUser):
        """OpenAI: POST /openai/v1/embeddings"""

        @tag("openai")
        @task
        def embeddings(self):
            texts = sample_batch(self.rng, MAX_ITEMS)
            payload = {"model": MODEL, "input": texts, "encoding_format": "float"}
            self._post("openai embeddings", "/openai/v1/embeddings", payload, _openai_vectors, len(texts))
