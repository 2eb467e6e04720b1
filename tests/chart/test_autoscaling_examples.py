"""The autoscaling recipes (charts/.../examples/autoscaling/) through the KServe model, in their mode, on every
KServe version it knows: the webhook admits them, and KServe creates the autoscaling objects the recipe says
(Knative annotations and containerConcurrency; the HPA; no HPA for class external; KEDA's triggers)."""

from __future__ import annotations

import re

import prometheus_client
import pytest
import yaml
from hfserve.serving import metrics as runtime_metrics

from conformance.kserve_model import SUPPORTED, admit_inference_service, assemble_pod
from conformance.kserve_model.autoscaling import (
    InvalidAutoscaling,
    kpa_target_per_pod,
    raw_autoscaler,
    revision_container_concurrency,
    validate_autoscaling,
)

from .chartlib import EXAMPLES
from .kserve_matrix import HF, runtimes_of

RECIPES = EXAMPLES / "autoscaling"


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((RECIPES / f"{name}.yaml").read_text()) if d]


def _pod(isvc: dict, version: str) -> dict:
    admit_inference_service(isvc, version)
    validate_autoscaling(isvc)
    return assemble_pod(runtimes_of("defaults")[HF], isvc, "RawDeployment", version)


def _flag(pod: dict, name: str) -> str | None:
    args = next(c for c in pod["spec"]["containers"] if c["name"] == "kserve-container").get("args") or []
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")), None)


def _exported(metric: str) -> bool:
    """The runtime's /metrics exposition (the registry hfserve.serving.metrics fills) declares this family."""
    text = prometheus_client.generate_latest(runtime_metrics.REGISTRY).decode()
    return f"# TYPE {metric} gauge" in text


def test_every_recipe_is_tested_here():
    assert {p.stem for p in RECIPES.glob("*.yaml")} == {"kpa-concurrency", "hpa-cpu", "hpa-prometheus-adapter",
                                                       "keda-queued-tokens"}


@pytest.mark.parametrize("version", SUPPORTED)
def test_kpa_recipe_gets_knative_concurrency_annotations_and_a_hard_cap_below_the_runtime_s(version):
    (isvc,) = _docs("kpa-concurrency")
    pod = _pod(isvc, version)  # the ISVC's annotation makes it Serverless whatever the cluster default
    predictor = isvc["spec"]["predictor"]
    knative = {k: v for k, v in pod["metadata"]["annotations"].items() if k.startswith("autoscaling.knative.dev/")}
    assert knative == {"autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
                       "autoscaling.knative.dev/min-scale": "1", "autoscaling.knative.dev/max-scale": "8",
                       "autoscaling.knative.dev/metric": "concurrency", "autoscaling.knative.dev/target": "8",
                       "autoscaling.knative.dev/scale-down-delay": "5m"}
    assert any(c["name"] == "queue-proxy" for c in pod["spec"]["containers"])
    cap = revision_container_concurrency(predictor)
    # queue-proxy holds the requests past the cap, so the runtime must take at least that many or it 429s first
    assert 0 < cap <= int(_flag(pod, "max_concurrent_requests"))
    assert kpa_target_per_pod(predictor) == pytest.approx(0.7 * 8)


@pytest.mark.parametrize("version", SUPPORTED)
def test_hpa_cpu_recipe_gets_kserve_s_cpu_hpa(version):
    (isvc,) = _docs("hpa-cpu")
    pod = _pod(isvc, version)
    assert not any(c["name"] == "queue-proxy" for c in pod["spec"]["containers"])
    hpa = raw_autoscaler(pod, isvc["spec"]["predictor"], version)
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "minilm-hpa-cpu-predictor"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 8)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 70}}}]
    assert all(c["resources"]["requests"].get("cpu") for c in pod["spec"]["containers"])


@pytest.mark.parametrize("version", SUPPORTED)
def test_prometheus_adapter_recipe_leaves_the_hpa_to_its_own_object_on_an_exported_metric(version):
    isvc, hpa = _docs("hpa-prometheus-adapter")
    pod = _pod(isvc, version)
    assert raw_autoscaler(pod, isvc["spec"]["predictor"], version) is None  # class external: KServe makes none
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": pod["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    text = (RECIPES / "hpa-prometheus-adapter.yaml").read_text()
    rule_name = re.search(r'as: "([a-z_0-9]+)"', text).group(1)
    source = re.search(r'matches: "\^([a-z_]+)\$"', text).group(1)
    assert metric["pods"]["metric"]["name"] == rule_name and _exported(source)


@pytest.mark.parametrize("version", SUPPORTED)
def test_keda_recipe_becomes_a_prometheus_trigger_on_queued_tokens(version):
    (isvc,) = _docs("keda-queued-tokens")
    pod = _pod(isvc, version)
    scaled = raw_autoscaler(pod, isvc["spec"]["predictor"], version)
    assert scaled["kind"] == "ScaledObject" and scaled["spec"]["scaleTargetRef"] == {"name": "minilm-keda-predictor"}
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 8)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    # v0.15 formats the quantity with %f; from v0.16 getOriginalStringMQ keeps it as written
    assert trigger["metadata"]["threshold"] == ("148.000000" if version == "0.15" else "148")
    query = trigger["metadata"]["query"]
    assert _exported(re.search(r"\((hfserve_[a-z_]+)\{", query).group(1))
    assert re.search(r'pod=~"(.+?)"', query).group(1) == f"{pod['metadata']['name']}-.*"


def test_the_webhook_refuses_what_the_recipes_avoid():
    (keda,) = _docs("keda-queued-tokens")
    keda["spec"]["predictor"]["scaleMetric"] = "cpu"
    with pytest.raises(InvalidAutoscaling, match="ScaleMetric is not supported for KEDA"):
        validate_autoscaling(keda)
    (cpu,) = _docs("hpa-cpu")
    cpu["spec"]["predictor"]["autoScaling"] = keda["spec"]["predictor"]["autoScaling"]
    with pytest.raises(InvalidAutoscaling, match="valid metric source types are Resource"):
        validate_autoscaling(cpu)
    (kpa,) = _docs("kpa-concurrency")
    kpa["spec"]["predictor"]["scaleMetric"] = "cpu"
    with pytest.raises(InvalidAutoscaling, match="not a supported metric"):
        validate_autoscaling(kpa)


def test_recipe_values_are_the_derivations_docs_autoscaling_states():
    """containerConcurrency/scaleTarget = the knee (c=8 at p99 <= 500 ms in the quiet-machine bench points that
    make autoscale-sim defaults to); the token threshold = capacity.TOKEN_HEADROOM x the knee's time-weighted queued tokens in that model."""
    import numpy as np

    from loadtests import autoscale_sim as sim
    from loadtests.capacity import TOKEN_HEADROOM

    short, long = sim.corpus_tokens()
    model = sim.PodModel.fitted([(53.4, 2.8, 0), (75.9, 6.4, 0)], float(np.mean(short + long)), 30)
    threshold = round(TOKEN_HEADROOM * sim.closed_loop_queued_tokens(model, short + long, 8))
    (kpa,) = _docs("kpa-concurrency")
    assert kpa["spec"]["predictor"]["containerConcurrency"] == kpa["spec"]["predictor"]["scaleTarget"] == 8
    (keda,) = _docs("keda-queued-tokens")
    assert keda["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]["target"]["value"] == str(threshold)
    _, hpa = _docs("hpa-prometheus-adapter")
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == str(threshold)
