"""A real Prometheus (Debian's package, `make prometheus-tools`) scrapes a running runtime of each kind: runtime 1,
the Triton runtime's transformer (Triton's metrics bridged in) and a transformer whose Triton is missing. Then
every query of the chart's Grafana dashboard and every alert of its PrometheusRule is evaluated through
Prometheus' HTTP API: each returns series (the GPU panels only on a GPU: here they must be valid and empty; the
kube-state-metrics alerts are valid, their hfserve side returns series), and the loaded rules evaluate without
error."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
import yaml

from devkit.processes import ServerProcess, free_port

from .chart.chartlib import CHART, render
from .servers import served
from .test_metrics import refused_burst, wait_for
from .triton.test_triton_metrics import transformer_without_triton  # noqa: F401 - a fixture

guarded = served("minilm", "metered", "--max_concurrent_requests", "1")  # shared with tests/test_metrics.py

DASHBOARD = CHART / "dashboards" / "hfserve.json"
GPU_ONLY = "nv_gpu_"  # Triton exports GPU families only where it has a GPU
NEEDS_KUBE_STATE_METRICS = ("HfserveNotReady", "HfserveRestarts")
RATE_WINDOW = "2m"  # what Grafana's $__rate_interval becomes: wide enough to span scrapes missed while the pods are busy


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"].replace("$__rate_interval", RATE_WINDOW))
            for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rules(**thresholds) -> dict:
    values = {"monitoring": {"prometheusRule": {"enabled": True, **thresholds}}}
    (rule,) = [o for o in render(values) if o["kind"] == "PrometheusRule"]
    return rule["spec"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, guarded, minilm_triton, transformer_without_triton):  # noqa: F811
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make prometheus-tools` installs Debian's prometheus package"
    work = tmp_path_factory.mktemp("prometheus")
    # Thresholds at which each alert's condition holds on these runtimes: the expressions are the chart's.
    (work / "rules.yaml").write_text(yaml.safe_dump(rules(latencySloSeconds=1e-6, overloadedRatio=0)))
    targets = {"huggingface": guarded.url, "triton": minilm_triton.transformer.url,
               "triton-down": transformer_without_triton.url}
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
              "rule_files": [str(work / "rules.yaml")],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [url.removeprefix("http://")]}]}
                                 for job, url in targets.items()]}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = ServerProcess([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
                           work / "prometheus.log")
    server.start()
    try:
        server.wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60)
        yield f"http://127.0.0.1:{port}", targets
    finally:
        server.stop()


def query(prometheus_url: str, promql: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (promql, body)
    return body["data"]["result"]


def traffic(guarded, minilm_triton, lonely) -> None:
    for server in (guarded, minilm_triton.transformer):
        for texts in (["a short query"], ["a longer passage about serving embeddings on Kubernetes"] * 3):
            response = httpx.post(f"{server.url}/openai/v1/embeddings", json={"model": server.model_name,
                                                                              "input": texts}, timeout=60)
            assert response.status_code == 200, response.text
    refused_burst(guarded)  # 429s
    assert httpx.post(f"{lonely.url}/embed", json={"inputs": "x"}, timeout=30).status_code == 503


def test_dashboard_queries_and_alerts_return_series_from_a_real_prometheus(prometheus, guarded, minilm_triton,
                                                                           transformer_without_triton):  # noqa: F811
    url, targets = prometheus
    wait_for(lambda: len(query(url, "up == 1")) == len(targets), timeout=60, what=f"all of {sorted(targets)} up")
    traffic(guarded, minilm_triton, transformer_without_triton)
    # Once Prometheus has scraped after the traffic, twice within the rate window: the traffic is in every rate.
    scraped_after = time.time() + 2.5
    wait_for(lambda: time.time() > scraped_after and
             query(url, f'increase(hfserve_requests_total{{code="429"}}[{RATE_WINDOW}]) > 0'), timeout=60,
             what="the 429 in Prometheus")

    empty = {}
    for title, promql in dashboard_queries():
        result = query(url, promql)
        if GPU_ONLY in promql:
            assert result == [], (title, result)  # no GPU here: valid, and nothing
        elif not result:
            empty[title] = promql
    assert empty == {}, f"dashboard queries without series: {empty}"

    jobs = {r["metric"]["job"] for r in query(url, "hfserve_triton_metrics_up")}
    assert jobs == {"triton", "triton-down"}
    assert {r["metric"]["job"] for r in query(url, "nv_inference_pending_request_count")} == {"triton"}

    spec = rules()
    assert len(spec["groups"][0]["rules"]) == 5
    for rule in spec["groups"][0]["rules"]:
        name, expr = rule["alert"], rule["expr"]
        if name in NEEDS_KUBE_STATE_METRICS:
            assert query(url, expr) == []  # valid; kube-state-metrics is not here
            assert query(url, expr.split(" and ", 1)[1].removeprefix("on (namespace, pod) "))  # our pods are
    firing_conditions = rules(latencySloSeconds=1e-6, overloadedRatio=0)["groups"][0]["rules"]
    held = {r["alert"]: len(query(url, r["expr"])) for r in firing_conditions
            if r["alert"] not in NEEDS_KUBE_STATE_METRICS}
    assert all(held.values()), held  # each condition holds on these runtimes

    def loaded() -> list[dict]:
        groups = httpx.get(f"{url}/api/v1/rules", timeout=30).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    evaluated = wait_for(lambda: (r := loaded()) and not any(x["lastEvaluation"].startswith("0001") for x in r) and r,
                         what="every rule evaluated once")
    assert {r["name"] for r in evaluated} == {r["alert"] for r in spec["groups"][0]["rules"]}
    assert {r["name"]: r["health"] for r in evaluated} == dict.fromkeys((r["name"] for r in evaluated), "ok")
    states = {r["name"]: r["state"] for r in evaluated}
    for name in held:  # the condition holds; `for` keeps it pending
        assert states[name] in ("pending", "firing"), states
    assert {states[n] for n in NEEDS_KUBE_STATE_METRICS} == {"inactive"}
