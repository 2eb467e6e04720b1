"""The scaling and operating signals on /metrics (docs/observability.md): request counters by route family and
status (429 and 503 included), requests in flight, texts and tokens queued for the model, the pass being computed,
input tokens and output items; bounded label cardinality whatever a client sends.

In-process tests hold the model's forward pass on an Event (as tests/test_batching.py does), so the gauges are read
while work is provably queued; the server tests read a real runtime-1 process's /metrics. The Triton runtime's
bridge is tested in tests/triton/test_triton_metrics.py and by a real Prometheus in tests/test_prometheus_scrape.py.
"""

import asyncio
import random
import string
import threading
import time
from pathlib import Path

import httpx
from hfserve.config import ModelSettings
from hfserve.core.encoder_service import EncoderService
from hfserve.huggingface.in_process_backend import InProcessBackend
from hfserve.serving.metrics import ROUTE_FAMILIES, route_family
from hfserve.tasks import Task
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from .servers import served

# One slot, and MiniLM: a request of 32 long texts holds it for about a second on two cores.
guarded = served("minilm", "metered", "--max_concurrent_requests", "1")
HEAVY = ["the quick brown fox jumps over the lazy dog " * 60] * 32


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- route families: a fixed set, whatever the path ------------------------------------------------------------------

def test_route_families_are_a_fixed_set_whatever_the_path():
    known = {("POST", "/v1/models/m:predict"): "v1", ("POST", "/v2/models/m/infer"): "v2",
             ("POST", "/openai/v1/embeddings"): "openai", ("POST", "/v1/embeddings"): "openai",
             ("POST", "/v2/embed"): "cohere", ("POST", "/v1/rerank"): "rerank", ("POST", "/embed"): "tei",
             ("POST", "/"): "hf_inference", ("POST", "/generate_stream"): "tgi", ("GET", "/v2/health/ready"): "health",
             ("GET", "/v2/models/m/ready"): "health", ("GET", "/v2/models/m"): "metadata",
             ("GET", "/metrics"): "metrics", ("GET", "/info"): "metadata"}
    assert {key: route_family(*key) for key in known} == known
    rng = random.Random(7)
    for _ in range(500):
        path = "/" + "/".join("".join(rng.choices(string.printable, k=rng.randint(0, 12)))
                              for _ in range(rng.randint(0, 4)))
        assert route_family(rng.choice(["GET", "POST", "PUT"]), path) in ROUTE_FAMILIES


# --- in-process: the queue and pass gauges while a forward pass is held --------------------------------------------

def test_queue_and_pass_gauges_while_the_model_is_busy(minilm_dir):
    """While a pass is held: the request's texts and tokens are queued and the pass is being computed; after it:
    both are back to zero, input tokens and output items counted once."""
    settings = ModelSettings(model_name="gauged", model_dir=Path(minilm_dir), task=Task.TEXT_EMBEDDING)
    backend = InProcessBackend(settings, dtype="float32", device="cpu")
    service = EncoderService(settings, backend)
    service.load()
    held, entered = threading.Event(), threading.Event()
    forward_pass = backend.batcher._run_batch

    def held_pass(items):
        entered.set()
        assert held.wait(60)
        return forward_pass(items)

    backend.batcher._run_batch = held_pass
    texts = ["a short one", "a somewhat longer sentence about serving models on Kubernetes", "third"]
    series = {"texts": "hfserve_queue_texts", "tokens": "hfserve_queue_tokens",
              "pass_texts": "hfserve_batch_computing_texts", "pass_tokens": "hfserve_batch_computing_tokens",
              "input": "hfserve_input_tokens_total", "output": "hfserve_output_items_total"}

    def read() -> dict[str, float]:
        return {k: REGISTRY.get_sample_value(name, {"model_name": "gauged"}) or 0.0 for k, name in series.items()}

    async def scenario():
        before = read()
        encoded = await service.encode(texts)
        task = asyncio.ensure_future(service.run(encoded))
        deadline = time.monotonic() + 60
        while not entered.is_set():
            assert not task.done() and time.monotonic() < deadline, "the forward pass never started"
            await asyncio.sleep(0.01)
        during = read()
        held.set()
        forward = await task
        after = read()
        return before, during, after, encoded, forward

    try:
        before, during, after, encoded, forward = asyncio.run(scenario())
    finally:
        held.set()
        service.stop()
    tokens = encoded.tokens
    assert len(forward.rows) == 3
    assert (during["texts"], during["tokens"]) == (before["texts"] + 3, before["tokens"] + tokens)
    longest = max(len(item) for item in encoded.items)
    assert 1 <= during["pass_texts"] <= 3 and during["pass_tokens"] % during["pass_texts"] == 0  # n x its longest
    assert during["pass_texts"] <= during["pass_tokens"] <= during["pass_texts"] * longest
    assert (after["texts"], after["tokens"], after["pass_texts"], after["pass_tokens"]) == \
        (before["texts"], before["tokens"], 0, 0)
    assert after["input"] - before["input"] == tokens and after["output"] - before["output"] == 3


# --- runtime 1 over HTTP --------------------------------------------------------------------------------------------

def test_counters_match_what_the_requests_carried(guarded):
    """Input tokens grow by the prompt tokens OpenAI's usage reports, output items by the texts embedded, and the
    request counter by one per request, in its route family, with its status."""
    url, name = guarded.url, guarded.model_name
    before = samples(url)
    response = httpx.post(f"{url}/openai/v1/embeddings", json={"model": name, "input": ["one text", "and two"]},
                          timeout=60)
    assert response.status_code == 200, response.text
    missing = httpx.post(f"{url}/v1/models/{name}:predict", json={"no instances": 1}, timeout=60)
    assert missing.status_code == 400
    after = samples(url)
    tokens = response.json()["usage"]["prompt_tokens"]
    assert value(after, "hfserve_input_tokens_total", model_name=name) - \
        value(before, "hfserve_input_tokens_total", model_name=name) == tokens
    assert value(after, "hfserve_output_items_total", model_name=name) - \
        value(before, "hfserve_output_items_total", model_name=name) == 2
    for family, code in (("openai", "200"), ("v1", "400"), ("metrics", "200")):
        assert value(after, "hfserve_requests_total", family=family, code=code) - \
            value(before, "hfserve_requests_total", family=family, code=code) == 1, (family, code)
    assert value(after, "hfserve_queue_texts", model_name=name) == 0
    assert value(after, "hfserve_queue_tokens", model_name=name) == 0


def burst(server, clients: int = 6) -> list[int]:
    """`clients` heavy V1 requests released together on the one-slot server: their status codes."""
    barrier = threading.Barrier(clients)
    codes: list[int] = []

    def fire():
        barrier.wait()
        response = httpx.post(f"{server.url}/v1/models/{server.model_name}:predict", json={"instances": HEAVY},
                              timeout=300)
        codes.append(response.status_code)

    threads = [threading.Thread(target=fire) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return codes


def refused_burst(server) -> list[int]:
    """The codes of bursts until one had a 429: six requests together for one slot refuse some unless the machine
    stalls the senders for a whole forward pass; such a burst is sent again rather than taken as an answer."""
    codes: list[int] = []
    for _ in range(3):
        codes += burst(server)
        if 429 in codes:
            return codes
    raise AssertionError(f"three bursts of six heavy requests for one slot were never refused: {codes}")


def in_flight_while_one_runs(server) -> list[float]:
    """hfserve_requests_in_flight read while one heavy request runs, until it reads 1 (a request that ended before
    a scrape saw it is sent again)."""
    seen: list[float] = []
    for _ in range(3):
        running = threading.Thread(target=burst, args=(server, 1))
        running.start()
        while running.is_alive() and (not seen or seen[-1] != 1):
            seen.append(value(samples(server.url), "hfserve_requests_in_flight"))
        running.join(300)
        if 1 in seen:
            return seen
    raise AssertionError(f"no scrape saw the running request: {seen}")


def test_refused_requests_are_counted_as_429_and_the_slot_as_in_flight(guarded):
    """Every answer of a burst is counted with its status, 429s included (no more, no fewer); while a heavy
    request runs, in flight is 1, and 0 after."""
    url = guarded.url
    before = samples(url)
    codes = refused_burst(guarded)
    after = samples(url)
    assert set(codes) == {200, 429}, codes
    for code in (200, 429):
        assert value(after, "hfserve_requests_total", family="v1", code=str(code)) - \
            value(before, "hfserve_requests_total", family="v1", code=str(code)) == codes.count(code), code
    assert value(after, "hfserve_requests_in_flight") == 0
    seen = in_flight_while_one_runs(guarded)
    assert max(seen) == 1  # one slot: never more
    assert value(samples(url), "hfserve_requests_in_flight") == 0


def test_client_controlled_values_do_not_add_series(guarded):
    """Random model names, paths and methods: every answer is counted, yet the number of series stays put."""
    url = guarded.url
    rng = random.Random(11)
    sent: set[str] = set()

    def junk() -> str:
        sent.add(value := "".join(rng.choices(string.ascii_letters + string.digits + "-_.", k=rng.randint(1, 24))))
        return value

    def send_junk(count: int) -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(count):
                name = junk()
                for method, path, body in (("POST", f"/v1/models/{name}:predict", {"instances": ["x"]}),
                                           ("POST", f"/v2/models/{name}/infer", {"inputs": []}),
                                           ("GET", f"/v2/models/{name}/ready", None),
                                           ("POST", f"/openai/v1/{junk()}", {"model": name}),
                                           ("GET", f"/{junk()}/{junk()}", None)):
                    assert client.request(method, f"{url}{path}", json=body).status_code in (400, 404, 405, 422)

    send_junk(3)  # every status these answers take has been counted once
    before = samples(url)
    send_junk(40)
    after = samples(url)
    assert set(after) == set(before), sorted(set(after) ^ set(before), key=str)[:10]
    counted = sum(v for (n, _), v in after.items() if n == "hfserve_requests_total") - \
        sum(v for (n, _), v in before.items() if n == "hfserve_requests_total")
    assert counted >= 200  # the 40 x 5 requests (and the scrape) were counted, in the same series
    label_values = {v for (_, labels) in after for _, v in labels}
    assert not sent & label_values
