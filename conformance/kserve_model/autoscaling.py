"""The autoscaling KServe sets up for a predictor (same rules at v0.15.0 and master unless noted).

* Serverless: pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go
  `createKnativeService` at v0.15.0, `SetAutoScalingAnnotations` (pkg/controller/v1alpha1/utils/utils.go)
  on master: the revision template's annotations get `autoscaling.knative.dev/class` (kpa unless set),
  `min-scale` (the predictor's minReplicas, else 1), `max-scale` when maxReplicas is not 0, and
  `target`/`metric` from scaleTarget/scaleMetric. min-scale/max-scale written in a runtime's or the
  ISVC's annotations never get there (`ServiceAnnotationDisallowedList`, pod_assembly.py).
* RawDeployment: reconcilers/autoscaler/autoscaler_reconciler.go `getAutoscalerClass` reads
  `serving.kserve.io/autoscalerClass` from the predictor's metadata (runtime spec.annotations <
  ISVC < predictor), default `hpa`; `hpa`, `external` (and `none`, from v0.16.0) go to the HPA
  reconciler, which creates an HPA only for `hpa`; `keda` makes a KEDA ScaledObject; any other
  class fails the ISVC ("unknown autoscaler class type"). reconcilers/hpa/hpa_reconciler.go
  `createHPA`: minReplicas (at least 1), maxReplicas (at least min), `getHPAMetrics`: CPU
  utilization `scaleTarget` or 80 % (constants.DefaultCPUUtilization), memory only with a scaleTarget.
  With `autoScaling.metrics` (v1beta1 component.go `AutoScalingSpec`, v0.15.0) the HPA takes only
  Resource (cpu/memory) entries: a Pods or External metric through the Prometheus adapter needs
  class `external` and an HPA of your own.
* KEDA: reconcilers/keda/keda_reconciler.go `getKedaMetrics`/`createKedaScaledObject`: one trigger per
  `autoScaling.metrics` entry (Resource -> cpu/memory trigger, External -> `<backend>` trigger with
  serverAddress/query/threshold(+namespace), PodMetric opentelemetry -> `external` trigger);
  minReplicaCount = minReplicas or 1. The threshold is `fmt.Sprintf("%f", value)` ("4000.000000") at
  v0.15.x and the value as written ("4000", `getOriginalStringMQ`) from v0.16.0.
* Serverless revision: reconcilers/knative/ksvc_reconciler.go (v0.15.0 line 187) copies the predictor's
  `containerConcurrency` into the revision spec; Knative's pkg/reconciler/autoscaling/resources/target.go
  `ResolveMetricTarget` (knative-v1.21.3) then aims each pod at min(target, containerConcurrency) x
  target utilization (70 % by default, pkg/autoscaler/config/config.go line 39).
* Validation (v1beta1 inference_service_validation.go `validateAutoScalingCompExtension`, v0.15.0): with
  the ISVC annotated RawDeployment, class hpa allows only Resource metrics, class keda refuses
  scaleMetric and needs a query and a target value on External/PodMetric entries; otherwise (KPA)
  scaleMetric is concurrency or rps.
"""

from __future__ import annotations

from typing import Any

from .versions import at_least

CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
KNATIVE_CLASS = "autoscaling.knative.dev/class"
KPA = "kpa.autoscaling.knative.dev"
DEFAULT_CPU_UTILIZATION = 80


class UnknownAutoscalerClass(Exception):
    """The InferenceService fails: its autoscaler class is not one that KServe version knows."""


def knative_annotations(annotations: dict[str, str], predictor: dict[str, Any]) -> dict[str, str]:
    """The revision template's annotations after KServe's autoscaling defaults."""
    out = dict(annotations)
    out.setdefault(KNATIVE_CLASS, KPA)
    out["autoscaling.knative.dev/min-scale"] = str(predictor.get("minReplicas", 1))
    if predictor.get("maxReplicas"):
        out["autoscaling.knative.dev/max-scale"] = str(predictor["maxReplicas"])
    if predictor.get("scaleTarget") is not None:
        out["autoscaling.knative.dev/target"] = str(predictor["scaleTarget"])
    if predictor.get("scaleMetric") is not None:
        out["autoscaling.knative.dev/metric"] = predictor["scaleMetric"]
    return out


def raw_autoscaler(pod: dict[str, Any], predictor: dict[str, Any], kserve_version: str) -> dict[str, Any] | None:
    """The autoscaling object KServe creates beside the predictor Deployment (None: none)."""
    name = pod["metadata"]["name"]
    klass = (pod["metadata"].get("annotations") or {}).get(CLASS_ANNOTATION, "hpa")
    known = {"hpa", "external", "keda"} | ({"none"} if at_least(kserve_version, "0.16") else set())
    if klass not in known:
        raise UnknownAutoscalerClass(f"unknown autoscaler class type: {klass}")
    if klass == "keda":
        minimum = int(predictor["minReplicas"]) if predictor.get("minReplicas") is not None else 1
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
                "spec": {"scaleTargetRef": {"name": name}, "triggers": keda_triggers(predictor, kserve_version),
                         "minReplicaCount": minimum,
                         "maxReplicaCount": max(int(predictor.get("maxReplicas") or 0), minimum)}}
    if klass != "hpa":
        return None
    minimum = max(int(predictor.get("minReplicas") or 1), 1)
    maximum = max(int(predictor.get("maxReplicas") or 0), minimum)
    metric = predictor.get("scaleMetric") or "cpu"
    metrics = []
    entries = (predictor.get("autoScaling") or {}).get("metrics")
    if entries:
        for entry in entries:
            res = entry.get("resource") or {}
            if res.get("name") == "cpu":
                metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization",
                    "averageUtilization": int(res["target"].get("averageUtilization") or DEFAULT_CPU_UTILIZATION)}}})
            elif res.get("name") == "memory":
                metrics.append({"type": "Resource", "resource": {"name": "memory", "target": dict(res["target"])}})
    elif metric == "cpu":
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(predictor.get("scaleTarget") or DEFAULT_CPU_UTILIZATION)}}})
    elif metric == "memory" and predictor.get("scaleTarget") is not None:
        metrics.append({"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": int(predictor["scaleTarget"])}}})
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": minimum, "maxReplicas": maximum, "metrics": metrics}}


KNATIVE_TARGET_UTILIZATION = 0.7  # knative/serving pkg/autoscaler/config/config.go defaultTargetUtilization


class InvalidAutoscaling(Exception):
    """KServe's InferenceService webhook refuses the predictor's autoscaling fields."""


def validate_autoscaling(isvc: dict[str, Any]) -> None:
    """`validateAutoScalingCompExtension` (v0.15.0, unchanged in the rules restated here through master)."""
    annotations = isvc["metadata"].get("annotations") or {}
    predictor = isvc["spec"]["predictor"]
    entries = (predictor.get("autoScaling") or {}).get("metrics") or []
    if annotations.get("serving.kserve.io/deploymentMode") == "RawDeployment":
        klass = annotations.get(CLASS_ANNOTATION)
        if klass == "hpa":
            if predictor.get("scaleMetric", "cpu") not in ("cpu", "memory"):
                raise InvalidAutoscaling(f"[{predictor['scaleMetric']}] is not a supported metric")
            for entry in entries:
                if entry["type"] != "Resource":
                    raise InvalidAutoscaling(f"invalid HPA metric source type with value [{entry['type']}],"
                                             "valid metric source types are Resource")
        elif klass == "keda":
            if predictor.get("scaleMetric") is not None:
                raise InvalidAutoscaling("ScaleMetric is not supported for KEDA")
            for entry in entries:
                source = {"External": "external", "PodMetric": "podmetric", "Resource": "resource"}.get(entry["type"])
                if source is None:
                    raise InvalidAutoscaling(f"unknown KEDA metric type with value [{entry['type']}]."
                                             "Valid types are Resource,External,PodMetric")
                body = entry.get(source)
                if body is None:
                    raise InvalidAutoscaling(f"metricSpec.{source} is not set")
                if source != "resource" and not body["metric"].get("query"):
                    raise InvalidAutoscaling("the query should not be empty")
                if source != "resource" and body["target"].get("value") is None:
                    raise InvalidAutoscaling("the target threshold value should not be empty")
        return
    if predictor.get("scaleMetric", "concurrency") not in ("concurrency", "rps"):
        raise InvalidAutoscaling(f"[{predictor['scaleMetric']}] is not a supported metric")


def _go_float(value: Any) -> str:
    return "%f" % float(value)


def keda_triggers(predictor: dict[str, Any], kserve_version: str) -> list[dict[str, Any]]:
    """`getKedaMetrics`: the ScaledObject's triggers from `autoScaling.metrics`."""
    verbatim = at_least(kserve_version, "0.16")
    triggers = []
    for entry in (predictor.get("autoScaling") or {}).get("metrics") or []:
        if entry["type"] == "Resource":
            res = entry["resource"]
            target = res["target"]
            value = "0"
            if target.get("type") == "Utilization":
                value = str(target.get("averageUtilization", DEFAULT_CPU_UTILIZATION if res["name"] == "cpu" else 0))
            elif target.get("type") in ("AverageValue", "Value"):
                raw = target.get("averageValue" if target["type"] == "AverageValue" else "value")
                value = str(raw) if raw is not None else "0"
            triggers.append({"type": res["name"], "metadata": {"value": value}, "metricType": target.get("type")})
        elif entry["type"] == "External":
            metric, target = entry["external"]["metric"], entry["external"]["target"]
            threshold = str(target["value"]) if verbatim else _go_float(target["value"])
            trigger = {"type": metric.get("backend", ""), "metadata": {
                "serverAddress": metric.get("serverAddress", ""), "query": metric["query"], "threshold": threshold}}
            if metric.get("backend") == "prometheus" and metric.get("namespace"):
                trigger["metadata"]["namespace"] = metric["namespace"]
            triggers.append(trigger)
    return triggers


def revision_container_concurrency(predictor: dict[str, Any]) -> int:
    """The revision's containerConcurrency (0: Knative's unlimited)."""
    return int(predictor.get("containerConcurrency") or 0)


def kpa_target_per_pod(predictor: dict[str, Any]) -> float:
    """Knative's `ResolveMetricTarget` for the concurrency metric with the config-autoscaler defaults:
    the in-flight requests per pod the KPA aims at."""
    cc = revision_container_concurrency(predictor)
    total = float(cc) if cc else 100.0  # ContainerConcurrencyTargetDefault
    if predictor.get("scaleTarget") is not None:
        total = float(predictor["scaleTarget"]) if not cc else min(float(predictor["scaleTarget"]), float(cc))
    return max(0.01, total * KNATIVE_TARGET_UTILIZATION)  # autoscaling.TargetMin
