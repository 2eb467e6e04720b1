"""What a scaler and an operator read on /metrics (docs/observability.md lists every series).

- RequestMetrics (ASGI, outermost of the serving controls): HTTP requests by route family and status code,
  refusals (429) and 503s included; count_in_flight(): the backpressure slots taken (serving/backpressure.py).
- model_work(): the texts and tokens a request has handed to the model and not yet got back (queued for a
  forward pass or in one; on the Triton runtime: at Triton), and the input tokens and output items counted.
- TritonMetrics: on the Triton runtime, Triton's own metrics page (pending requests, queue and compute time,
  execution counts, GPU utilization and memory when it has a GPU) scraped on loopback by a background thread,
  bounded in time, and re-exported from the cache, so one scrape of the serving port has everything.

Label values are never taken from the client: the route family is one of ROUTE_FAMILIES, the code is the status
the server sent, and model names are the served model's (set only once a request reached it).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("hfserve")

ROUTE_FAMILIES = ("v1", "v2", "openai", "cohere", "rerank", "tei", "hf_inference", "tgi", "health", "metadata",
                  "metrics", "other")

REQUESTS = Counter("hfserve_requests", "HTTP requests answered, by route family and status code",
                   ["family", "code"])
INFERENCE_FAMILIES = ("v1", "v2", "openai", "cohere", "rerank", "tei", "hf_inference", "tgi")
for _family in INFERENCE_FAMILIES:  # at 0 from the start, so rate() and increase() see the first refusal
    for _code in ("200", "429", "503"):
        REQUESTS.labels(family=_family, code=_code)
IN_FLIGHT = Gauge("hfserve_requests_in_flight", "Inference requests holding one of the --max_concurrent_requests "
                  "slots now (HTTP and gRPC; from the end of the upload until the response is sent)")
QUEUE_TEXTS = Gauge("hfserve_queue_texts", "Texts handed to the model and not answered yet: waiting for a forward "
                    "pass or in one (Triton runtime: sent to Triton)", ["model_name"])
QUEUE_TOKENS = Gauge("hfserve_queue_tokens", "Tokens of the texts in hfserve_queue_texts", ["model_name"])
INPUT_TOKENS = Counter("hfserve_input_tokens", "Tokens handed to the model (after truncation, prompt included)",
                       ["model_name"])
OUTPUT_ITEMS = Counter("hfserve_output_items", "Results the model returned: one per text (embedding, "
                       "classification, ...)", ["model_name"])

_EXACT = {"/": "hf_inference", "/metrics": "metrics", "/health": "health", "/v2/embed": "cohere",
          "/v1/rerank": "rerank", "/openai/v1/rerank": "rerank", "/v1/embeddings": "openai",
          "/embeddings": "openai", "/generate": "tgi", "/generate_stream": "tgi", "/info": "metadata",
          "/v2": "metadata", "/v1/models": "metadata", "/v2/models": "metadata", "/openapi.json": "metadata"}
_TEI = {"/embed", "/embed_all", "/embed_sparse", "/similarity", "/predict", "/rerank", "/tokenize", "/decode"}


def route_family(method: str, path: str) -> str:
    """One of ROUTE_FAMILIES for a request path; whatever a client sends maps to one of them."""
    if path in _EXACT:
        return _EXACT[path]
    if path in _TEI:
        return "tei"
    if path.startswith("/v2/health/"):
        return "health"
    if path.startswith("/openai/"):
        return "openai"
    if path.startswith(("/v1/models/", "/v2/models/")):
        if method != "POST":
            return "health" if path.endswith("/ready") else "metadata"
        return "v1" if path.startswith("/v1/") else "v2"
    return "other"


class RequestMetrics:
    """Counts every HTTP request by route family and the status it was answered with.

    A request whose response never started is counted as "500" when the app raised, "disconnected" when the client
    went away first."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        family = route_family(scope["method"], scope["path"])
        status: list[int] = []

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        code = "disconnected"
        try:
            await self.app(scope, receive, send_counted)
        except BaseException:
            code = "500"
            raise
        finally:
            REQUESTS.labels(family=family, code=str(status[0]) if status else code).inc()


def count_in_flight(slots) -> None:
    """hfserve_requests_in_flight reads the backpressure slots (serving/backpressure.Slots) at each scrape."""
    IN_FLIGHT.set_function(lambda: slots.in_flight)


@contextmanager
def model_work(model_name: str, texts: int, tokens: int) -> Iterator[None]:
    """Around one request's forward: its texts and tokens count as queued until the model answers."""
    queued_texts, queued_tokens = QUEUE_TEXTS.labels(model_name=model_name), QUEUE_TOKENS.labels(model_name=model_name)
    queued_texts.inc(texts)
    queued_tokens.inc(tokens)
    INPUT_TOKENS.labels(model_name=model_name).inc(tokens)
    try:
        yield
        OUTPUT_ITEMS.labels(model_name=model_name).inc(texts)
    finally:
        queued_texts.dec(texts)
        queued_tokens.dec(tokens)


# ---- Triton's metrics, bridged ----------------------------------------------------------------------------------

# Triton's families that describe the model's queue, passes and device; its other series (CPU, pinned memory,
# cache) stay on its own port.
TRITON_PREFIXES = ("nv_inference_", "nv_gpu_", "nv_energy_", "nv_cpu_")


class TritonMetrics(Collector):
    """Re-exports Triton's metrics page (`url`, on loopback) from a cache a daemon thread refreshes every
    `interval_s`, each fetch bounded by `timeout_s`; a scrape never waits for Triton. `hfserve_triton_metrics_up`
    says whether the last fetch worked, `hfserve_triton_metrics_age_seconds` how old the copy is."""

    def __init__(self, url: str, interval_s: float = 2.0, timeout_s: float = 1.0):
        self.url = url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._families: list[Metric] = []
        self._fetched_at: float | None = None
        self._up = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged_failure = False

    def start(self) -> "TritonMetrics":
        self._thread = threading.Thread(target=self._refresh_forever, name="triton-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:  # noqa: S310 - loopback URL
                text = response.read(4 << 20).decode("utf-8", "replace")
            families = [_as_triton_names(f) for f in text_string_to_metric_families(text)
                        if f.name.startswith(TRITON_PREFIXES)]
        except (OSError, ValueError, urllib.error.URLError) as error:
            if not self._logged_failure:
                logger.info("Triton's metrics at %s are not available yet (%s)", self.url, error)
                self._logged_failure = True
            with self._lock:
                self._up = False
            return
        self._logged_failure = False
        with self._lock:
            self._families, self._fetched_at, self._up = families, time.monotonic(), True

    def _refresh_forever(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval_s)

    def describe(self) -> list[Metric]:
        return []  # the families are Triton's: known only once fetched; nothing to check for name clashes

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families, fetched_at, up = list(self._families), self._fetched_at, self._up
        yield GaugeMetricFamily("hfserve_triton_metrics_up", "1 when the last fetch of Triton's metrics worked",
                                value=1.0 if up else 0.0)
        if fetched_at is not None:
            yield GaugeMetricFamily("hfserve_triton_metrics_age_seconds", "Age of the bridged copy of Triton's "
                                    "metrics", value=time.monotonic() - fetched_at)
        yield from families


def _as_triton_names(family: Metric) -> Metric:
    """The parser names a counter's samples `<name>_total`, and prometheus_client would print them so; Triton's
    counters have no suffix (nv_inference_request_success), and dashboards written for Triton use its names: they
    are re-exported untyped, under the names Triton gives them."""
    if family.type != "counter":
        return family
    untyped = Metric(family.name, family.documentation, "unknown")
    for sample in family.samples:
        untyped.add_sample(family.name, sample.labels, sample.value)
    return untyped


_bridge: TritonMetrics | None = None


def bridge_triton_metrics(url: str | None) -> TritonMetrics | None:
    """Registers (once per process) the bridge of Triton's metrics page at `url` into this process's /metrics."""
    global _bridge
    if not url or _bridge is not None:
        return _bridge
    _bridge = TritonMetrics(url)
    REGISTRY.register(_bridge)
    return _bridge.start()
