"""The chart's observability kit (templates/monitoring-*.yaml, dashboards/hfserve.json, ci/monitoring-values.yaml),
rendered by the real Helm engine: off by default; the PodMonitor and ServiceMonitor select the pods and Services
KServe makes of an InferenceService on either runtime (conformance.kserve_model) and name a port that serves
/metrics; the dashboard is the shipped JSON under the sidecar's label; the alerts pass `promtool check rules` and
`promtool test rules` (Debian's prometheus package, `make prometheus-tools`), and each has its runbook in
docs/observability.md. tests/test_prometheus_scrape.py evaluates the same queries on a real Prometheus."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conformance.kserve_model import assemble_pod, raw_service_ports

from .chartlib import CHART, REPO, render
from .kserve_matrix import HF, MODES, TRITON, isvc, runtimes_of, scenarios

MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule", "ConfigMap"}
DASHBOARD = CHART / "dashboards" / "hfserve.json"
DOCS = REPO / "docs" / "observability.md"
SCENARIO = "monitoring"


def scenario_values() -> dict:
    return next(s for s in scenarios() if s.name == SCENARIO).values


def rendered(values: dict | None = None) -> dict[str, dict]:
    objects = render(values if values is not None else scenario_values())
    return {o["kind"]: o for o in objects if o["kind"] in MONITORING_KINDS}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make prometheus-tools` installs Debian's prometheus package"
    return path


def rules_file(tmp_path: Path, values: dict | None = None) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rendered(values)["PrometheusRule"]["spec"]))
    return path


def alerts(values: dict | None = None) -> dict[str, dict]:
    spec = rendered(values)["PrometheusRule"]["spec"]
    return {rule["alert"]: rule for group in spec["groups"] for rule in group["rules"]}


def matches(selector: dict, labels: dict) -> bool:
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for expression in selector.get("matchExpressions") or []:
        present = expression["key"] in labels
        ok &= {"Exists": present, "DoesNotExist": not present,
               "In": labels.get(expression["key"]) in expression.get("values", []),
               "NotIn": labels.get(expression["key"]) not in expression.get("values", [])}[expression["operator"]]
    return ok


def test_nothing_is_rendered_by_default():
    assert rendered({}) == {}


def test_the_scenario_renders_every_monitoring_object_with_its_labels():
    objects = rendered()
    assert set(objects) == MONITORING_KINDS
    for kind, obj in objects.items():
        assert obj["metadata"]["namespace"] == "kserve", kind  # the release's namespace
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
        if kind != "ConfigMap":
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", kind
    elsewhere = rendered({**scenario_values(), "monitoring": {**scenario_values()["monitoring"],
                                                              "namespace": "monitoring"}})
    assert {o["metadata"]["namespace"] for o in elsewhere.values()} == {"monitoring"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_the_pod_monitor_selects_kserves_pods_and_scrapes_a_port_serving_metrics(runtime, mode):
    pod_monitor = rendered()["PodMonitor"]["spec"]
    pod = assemble_pod(runtimes_of(SCENARIO)[runtime], isvc("scraped", runtime), mode=mode)
    assert matches(pod_monitor["selector"], pod["metadata"]["labels"]), pod["metadata"]["labels"]
    assert pod_monitor["namespaceSelector"] == {"any": True}
    (endpoint,) = pod_monitor["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    named = [(c, p) for c in pod["spec"]["containers"] for p in c.get("ports") or [] if p.get("name") == endpoint["port"]]
    assert len(named) == 1, f"no single container port named {endpoint['port']}"
    container, port = named[0]
    http_port = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--http_port="))
    bind = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--bind_address="))
    assert int(http_port) == port["containerPort"] and bind == "0.0.0.0"  # the HTTP server, /metrics, on the pod IP
    # The defaults (any predictor pod) select it too.
    assert matches(yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]["podMonitor"]["selector"],
                   pod["metadata"]["labels"])


@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_the_service_monitor_names_a_port_of_the_raw_service(runtime):
    service_monitor = rendered()["ServiceMonitor"]["spec"]
    pod = assemble_pod(runtimes_of(SCENARIO)[runtime], isvc("scraped", runtime), mode="RawDeployment")
    # KServe's raw Service carries the predictor's labels (component: predictor) and maps its ports to the pod's.
    assert matches(service_monitor["selector"], pod["metadata"]["labels"])
    (endpoint,) = service_monitor["endpoints"]
    service_ports = {p["name"]: p for p in raw_service_ports(pod)}
    assert endpoint["port"] in service_ports, sorted(service_ports)
    target = service_ports[endpoint["port"]]["targetPort"]
    assert any(f"--http_port={target}" in c.get("args", []) for c in pod["spec"]["containers"])


def test_the_dashboard_config_map_is_the_shipped_json_under_the_sidecar_label():
    config_map = rendered()["ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"]["grafana_folder"] == "KServe"
    dashboard = json.loads(config_map["data"]["hfserve.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    topics = {"latency by phase": "hfserve_request_phase_seconds_bucket", "queue": "hfserve_queue_tokens",
              "in flight": "hfserve_requests_in_flight", "batch size": "hfserve_batch_size",
              "padding": "hfserve_batch_padded_tokens_sum", "429/503": '"429|503"',
              "Triton": "nv_inference_pending_request_count", "GPU": "nv_gpu_utilization"}
    assert {topic for topic, needle in topics.items() if needle not in exprs} == set()
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_promtool_checks_the_rendered_rules(tmp_path):
    result = subprocess.run([promtool(), "check", "rules", str(rules_file(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout, result.stdout


def _series(name: str, labels: dict, values: str) -> dict:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def test_promtool_unit_tests_fire_each_alert_on_its_signal_and_not_on_a_healthy_pod(tmp_path):
    """Two pods over 30 minutes: `sick` is slow, refuses 20% of its requests, cannot reach Triton, is not ready and
    restarts; `healthy` is fast and never refuses. Each alert fires for `sick` alone, after its `for`."""
    rules = rules_file(tmp_path)
    sick, healthy = {"namespace": "models", "pod": "sick"}, {"namespace": "models", "pod": "healthy"}
    series = []
    for pod, slow_share, refused in ((sick, 1.0, 20), (healthy, 0.0, 0)):
        # per minute: 100 requests; `slow_share` of them above 1 s (le=1 counts the fast ones)
        fast = int(100 * (1 - slow_share))
        for le, per_minute in (("0.25", fast), ("1", fast), ("+Inf", 100)):
            series.append(_series("hfserve_request_phase_seconds_bucket",
                                  {**pod, "model_name": "m", "phase": "total", "le": le}, f"0+{per_minute}x30"))
        series.append(_series("hfserve_requests_total", {**pod, "family": "v1", "code": "200"},
                              f"0+{100 - refused}x30"))
        series.append(_series("hfserve_requests_total", {**pod, "family": "v1", "code": "429"}, f"0+{refused}x30"))
        series.append(_series("hfserve_requests_in_flight", pod, "1x30"))
        series.append(_series("hfserve_triton_metrics_up", pod, ("0" if pod is sick else "1") + "x30"))
        series.append(_series("kube_pod_status_ready", {**pod, "condition": "false"},
                              ("1" if pod is sick else "0") + "x30"))
        series.append(_series("kube_pod_container_status_restarts_total", {**pod, "container": "kserve-container"},
                              "0 0 0 0 0 0 0 0 0 0 1 1 1 1 1 1 1 1 1 1" if pod is sick else "0x30"))
    # a pod of another runtime, not ready: not ours (no hfserve series), no alert
    series.append(_series("kube_pod_status_ready", {"namespace": "models", "pod": "other", "condition": "false"},
                          "1x30"))

    rule_annotations = {name: rule["annotations"] for name, rule in alerts(scenario_values()).items()}
    summaries = {"HfserveLatencyOverSLO": "p99 request time of m on sick is 1s",  # the +Inf bucket's lower bound
                 "HfserveSustained429": "20% of the inference requests to sick are refused with 429",
                 "HfserveTritonUnavailable": "The transformer of sick cannot reach Triton",
                 "HfserveNotReady": "sick has not been ready for a while",
                 "HfserveRestarts": "kserve-container of sick restarted in the last 15 minutes"}

    def fired(name: str, **labels) -> list[dict]:
        return [{"exp_labels": {"alertname": name, "severity": "warning", "namespace": "models", "pod": "sick",
                                **labels},
                 "exp_annotations": {**rule_annotations[name], "summary": summaries[name]}}]

    tests = [{"interval": "1m", "input_series": series, "alert_rule_test": [
        {"eval_time": "5m", "alertname": "HfserveLatencyOverSLO", "exp_alerts": []},  # pending: not yet 10m
        {"eval_time": "20m", "alertname": "HfserveLatencyOverSLO", "exp_alerts": fired("HfserveLatencyOverSLO",
                                                                                         model_name="m")},
        {"eval_time": "20m", "alertname": "HfserveSustained429", "exp_alerts": fired("HfserveSustained429")},
        {"eval_time": "3m", "alertname": "HfserveTritonUnavailable", "exp_alerts": []},
        {"eval_time": "20m", "alertname": "HfserveTritonUnavailable", "exp_alerts": fired("HfserveTritonUnavailable")},
        {"eval_time": "20m", "alertname": "HfserveNotReady", "exp_alerts": fired("HfserveNotReady")},
        {"eval_time": "12m", "alertname": "HfserveRestarts", "exp_alerts": fired("HfserveRestarts",
                                                                                   container="kserve-container")},
        {"eval_time": "29m", "alertname": "HfserveRestarts", "exp_alerts": []},  # the restart left the window
    ]}]
    test_file = tmp_path / "alerts-test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_come_from_the_values():
    values = {"monitoring": {"prometheusRule": {"enabled": True, "latencySloSeconds": 2, "overloadedRatio": 0.2,
                                                "for": "3m", "severity": "page"}}}
    rules = alerts(values)
    assert rules["HfserveLatencyOverSLO"]["expr"].endswith("> 2")
    assert rules["HfserveSustained429"]["expr"].endswith("> 0.2")
    assert rules["HfserveLatencyOverSLO"]["for"] == "3m"
    assert {r["labels"]["severity"] for r in rules.values()} == {"page"}


def test_every_alert_has_its_runbook_in_the_docs():
    docs = DOCS.read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
               for h in re.findall(r"^#+ (.+)$", docs, re.M)}
    for name, rule in alerts(scenario_values()).items():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors and anchor == name.lower(), name
        section = docs.split(f"### {name}", 1)[1].split("\n### ", 1)[0]
        assert len(section.split()) > 30, f"{name}'s runbook is too short"
