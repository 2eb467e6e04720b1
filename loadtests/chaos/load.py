"""The soak's steady load (V1, V2 and OpenAI embeddings of varied lengths) and its bursts of bad inputs."""

from __future__ import annotations

import json
import random
import threading
import time

import httpx

from loadtests.chaos.judge import REQUEST_TIMEOUT_S, Outcome, Run

MODEL = "minilm"
WORDS = "serving models on kubernetes with batching tokenizers triton transformers and load".split()


def request_for(rng: random.Random, protocol: str) -> tuple[str, dict]:
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.choice((3, 12, 40, 120)))) for _ in range(rng.randint(1, 4))]
    if protocol == "v1":
        return f"/v1/models/{MODEL}:predict", {"instances": texts}
    if protocol == "v2":
        return f"/v2/models/{MODEL}/infer", {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                                          "data": texts}]}
    return "/openai/v1/embeddings", {"model": MODEL, "input": texts}


BAD_INPUTS = [
    (f"/v1/models/{MODEL}:predict", b"{not json"),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": "not a list"}).encode()),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": [1, 2, 3]}).encode()),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": ["x"] * 1000}).encode()),
    (f"/v2/models/{MODEL}/infer", json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32",
                                                          "data": [1.0]}]}).encode()),
    ("/openai/v1/embeddings", json.dumps({"model": MODEL, "input": []}).encode()),
    ("/openai/v1/embeddings", json.dumps({"model": MODEL}).encode()),
]


def classify(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, str) or (isinstance(error, dict) and isinstance(error.get("message"), str))


def load_worker(url: str, run: Run, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        while not stop.is_set():
            protocol = rng.choice(("v1", "v2", "openai"))
            path, body = request_for(rng, protocol)
            start = time.monotonic()
            try:
                response = http.post(path, json=body)
                outcome = Outcome(start, time.monotonic(), protocol, response.status_code,
                                  json_error=response.status_code != 200 and classify(response))
                if response.status_code != 200:
                    time.sleep(0.05)  # a client backs off a little on errors (a 503 comes back at once)
            except httpx.HTTPError as exc:
                outcome = Outcome(start, time.monotonic(), protocol, None, type(exc).__name__)
                time.sleep(0.2)
            with run.lock:
                run.outcomes.append(outcome)


def send_bad_inputs(url: str, run: Run) -> None:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        for path, body in BAD_INPUTS * 3:
            start = time.monotonic()
            try:
                r = http.post(path, content=body, headers={"content-type": "application/json"})
                outcome = Outcome(start, time.monotonic(), "bad", r.status_code, json_error=classify(r), bad_input=True)
            except httpx.HTTPError as exc:
                outcome = Outcome(start, time.monotonic(), "bad", None, type(exc).__name__, bad_input=True)
            with run.lock:
                run.outcomes.append(outcome)
