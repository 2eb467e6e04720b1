"""Dynamic batching under 32 concurrent requests.

Runtime 1 exports the histogram `hfserve_batch_size` (batch sizes actually run) on /metrics;
for the Triton runtime, Triton's statistics API counts inferences and executions per model.
Each test reads the counters before and after the load, so earlier traffic does not count.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import tritonclient.grpc

from conformance import protocol as P

pytestmark = pytest.mark.batching

CONCURRENCY = 32
ROUNDS = 4
TEXTS = [f"request {i}: a short sentence to embed, with a few more words for realism" for i in range(CONCURRENCY)]


def _metrics(dep) -> tuple[float, float]:
    """(forward passes, texts) so far: count and sum of hfserve_batch_size over all label sets."""
    with dep.http() as http:
        r = http.get("/metrics")
    assert r.status_code == 200, f"/metrics -> {r.status_code}"
    count = total = 0.0
    seen = False
    for line in r.text.splitlines():
        m = re.match(r"^hfserve_batch_size_(count|sum)(\{[^}]*\})?\s+([0-9.eE+-]+)", line)
        if m:
            seen = True
            if m.group(1) == "count":
                count += float(m.group(3))
            else:
                total += float(m.group(3))
    assert seen, "no hfserve_batch_size histogram on /metrics"
    return count, total


def _triton_stats(dep) -> tuple[int, int]:
    """(executions, inferences) so far: the model's execution_count and inference_count in Triton's statistics."""
    assert dep.triton_http_url, "no Triton address for this target (pass --triton-url)"
    with httpx.Client(base_url=dep.triton_http_url, timeout=10) as http:
        r = http.get(f"/v2/models/{dep.triton_model_name}/stats")
    assert r.status_code == 200, f"Triton stats -> {r.status_code}: {r.text[:200]}"
    stats = r.json()["model_stats"]
    return sum(int(s["execution_count"]) for s in stats), sum(int(s["inference_count"]) for s in stats)


def _load(dep, concurrency=CONCURRENCY, rounds=ROUNDS) -> int:
    """`rounds` waves of `concurrency` simultaneous one-item requests; returns how many were sent."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(base_url=dep.http_url, timeout=120, limits=limits) as http:
        def one(i):
            return P.v1_embeddings(P.v1_predict(http, dep.model_name, [TEXTS[i % len(TEXTS)]]))

        with ThreadPoolExecutor(concurrency) as pool:
            for _ in range(rounds):
                results = list(pool.map(one, range(concurrency)))
                assert all(r.shape[0] == 1 for r in results)
    return concurrency * rounds


def _batch_stats(dep) -> tuple[int, float, float]:
    """Send the load; return (requests, executions, mean batch size)."""
    if dep.runtime == "triton" or (dep.runtime == "unknown" and dep.triton_http_url):
        counters, counted_by = _triton_stats, "Triton"
    else:
        counters, counted_by = _metrics, "hfserve_batch_size"
    runs0, items0 = counters(dep)
    n = _load(dep)
    runs1, items1 = counters(dep)
    runs, items = runs1 - runs0, items1 - items0
    assert items >= n, f"{counted_by} counted {items} items for {n} requests"
    return n, runs, items / max(runs, 1)


def test_concurrent_requests_are_batched(minilm, request):
    n, executions, mean = _batch_stats(minilm)
    request.node.user_properties.append(("requests", n))
    request.node.user_properties.append(("executions", executions))
    request.node.user_properties.append(("mean_batch_size", round(mean, 2)))
    assert executions < n, f"{executions} model executions for {n} requests: no batching"
    assert mean > 1.0, f"mean batch size {mean:.2f}"


@pytest.mark.gpu
def test_gpu_instance_and_batch_of_at_least_4(minilm, request):
    """On a GPU: the model runs on the GPU and averages a batch of at least 4 at concurrency 32."""
    if minilm.runtime == "triton" and minilm.triton_grpc_target:
        # over gRPC: the launcher restricts HTTP's model-config API to its own token, gRPC's is open
        client = tritonclient.grpc.InferenceServerClient(minilm.triton_grpc_target)
        try:
            config = client.get_model_config(minilm.triton_model_name, as_json=True)["config"]
        finally:
            client.close()
        kinds = {g.get("kind") for g in config.get("instance_group", [])}
        assert kinds == {"KIND_GPU"}, f"Triton instance groups: {config.get('instance_group')}"
    elif minilm.control is not None and minilm.where == "local":
        pid = minilm.control.pid(minilm.control.serving_container)
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout
        pids = {int(p) for p in out.split() if p.strip().isdigit()}
        assert pid in pids or _children(pid) & pids, f"runtime pid {pid} holds no GPU context ({sorted(pids)})"
    n, executions, mean = _batch_stats(minilm)
    request.node.user_properties.append(("mean_batch_size", round(mean, 2)))
    assert mean >= 4.0, f"mean batch size {mean:.2f} at concurrency {CONCURRENCY}"


def _children(pid: int) -> set[int]:
    try:
        import psutil

        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except Exception:  # noqa: BLE001
        return set()
