"""Prometheus annotations on the predictor pod, and where a scrape of them lands.

pkg/webhook/admission/pod/metrics_aggregate_injector.go, `InjectMetricsAggregator`: the pod
annotations `serving.kserve.io/enable-prometheus-scraping` and
`serving.kserve.io/enable-metric-aggregation` default to the inferenceservice-config values
(both "false" in config/configmap/inferenceservice.yaml); with scraping on, the injector sets
`prometheus.io/port` to 9091 (queue-proxy's own metrics), or 9088 when aggregation is on, and
`prometheus.io/path` to /metrics; with aggregation on, queue-proxy
(`setMetricAggregationEnvVarsAndPorts`) scrapes the runtime at `prometheus.kserve.io/port|path`
(default 8080, /metrics) and serves both on 9088. Queue-proxy exists only in Serverless mode.
"""

from __future__ import annotations

from typing import Any

SCRAPE = "serving.kserve.io/enable-prometheus-scraping"
AGGREGATE = "serving.kserve.io/enable-metric-aggregation"
QUEUE_PROXY_METRICS, AGGREGATE_PORT = "9091", "9088"


def inject(pod: dict[str, Any], config: dict[str, str] | None = None) -> None:
    config = {SCRAPE: "false", AGGREGATE: "false", **(config or {})}
    ann = pod["metadata"]["annotations"]
    ann.setdefault(AGGREGATE, config[AGGREGATE])
    ann.setdefault(SCRAPE, config[SCRAPE])
    if ann[SCRAPE] == "true":
        ann["prometheus.io/port"] = AGGREGATE_PORT if ann[AGGREGATE] == "true" else QUEUE_PROXY_METRICS
        ann["prometheus.io/path"] = "/metrics"


def scrape_target(pod: dict[str, Any]) -> dict[str, Any]:
    """What a Prometheus that honours `prometheus.io/*` pod annotations scrapes: {"port", "path",
    "serves": "runtime" | "queue-proxy" | "runtime+queue-proxy" | None} where None means nothing
    listens there, and "runtime" covers the declared runtime metrics endpoint."""
    ann = pod["metadata"]["annotations"]
    has_queue_proxy = any(c["name"] == "queue-proxy" for c in pod["spec"]["containers"])
    port, path = ann.get("prometheus.io/port"), ann.get("prometheus.io/path", "/metrics")
    if port is None:
        return {"port": None, "path": None, "serves": None}
    if port in (QUEUE_PROXY_METRICS, AGGREGATE_PORT):
        if not has_queue_proxy:
            return {"port": port, "path": path, "serves": None}  # no queue-proxy in Standard mode
        if port == QUEUE_PROXY_METRICS:
            return {"port": port, "path": path, "serves": "queue-proxy"}
        runtime = _runtime_metrics(pod, ann.get("prometheus.kserve.io/port", "8080"),
                                   ann.get("prometheus.kserve.io/path", "/metrics"))
        return {"port": port, "path": path, "serves": "runtime+queue-proxy" if runtime else "queue-proxy"}
    return {"port": port, "path": path, "serves": "runtime" if _runtime_metrics(pod, port, path) else None}


def _runtime_metrics(pod: dict[str, Any], port: str, path: str) -> bool:
    """Whether a container of the pod serves `path` on `port` on the pod IP: the runtime's HTTP
    port (`--http_port`, bound to a non-loopback address) serves /metrics."""
    for c in pod["spec"]["containers"]:
        args = c.get("args") or []
        http = next((a.split("=", 1)[1] for a in args if a.startswith("--http_port=")), None)
        bind = next((a.split("=", 1)[1] for a in args if a.startswith("--bind_address=")), "0.0.0.0")
        if http == str(port) and bind != "127.0.0.1" and path == "/metrics":
            return True
    return False
