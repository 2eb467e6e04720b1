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
        return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
                "spec": {"scaleTargetRef": {"name": name}}}
    if klass != "hpa":
        return None
    minimum = max(int(predictor.get("minReplicas") or 1), 1)
    maximum = max(int(predictor.get("maxReplicas") or 0), minimum)
    metric = predictor.get("scaleMetric") or "cpu"
    metrics = []
    if metric == "cpu":
        metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": int(predictor.get("scaleTarget") or DEFAULT_CPU_UTILIZATION)}}})
    elif metric == "memory" and predictor.get("scaleTarget") is not None:
        metrics.append({"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "Utilization", "averageUtilization": int(predictor["scaleTarget"])}}})
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": minimum, "maxReplicas": maximum, "metrics": metrics}}
