"""What the API server and KServe's admission webhook do with a (Cluster)ServingRuntime.

* The CRD's OpenAPI schema (config/crd/full/serving.kserve.io_clusterservingruntimes.yaml, what
  the `kserve-crd` Helm chart installs): `supportedModelFormats[].priority` has `minimum: 1`,
  `supportedModelFormats[].name` and `containers` are required. The minimal CRD
  (config/crd/minimal, `kserve-crd-minimal`) preserves unknown fields of `spec` and checks none
  of this; the chart's values schema refuses a priority below 1 either way.
* The validating webhook `clusterservingruntime.kserve-webhook-server.validator`
  (config/webhook/manifests.yaml, failurePolicy Fail) runs
  pkg/webhook/admission/servingruntime/servingruntime_webhook.go,
  `ClusterServingRuntimeValidator.Handle`: a disabled new runtime is always allowed; otherwise,
  against every existing ClusterServingRuntime, `validateModelFormatPrioritySame` and
  `validateServingRuntimePriority`; then `validateBlockedEnvVars` (pkg/validation/env_policy.go,
  `DefaultBlockedEnvVars` = PYTHONPATH; present from v0.18.0).
"""

from __future__ import annotations

import re
from typing import Any

from .versions import at_least

# pkg/validation/env_policy.go, DefaultBlockedEnvVars (v0.18.0 and later)
BLOCKED_ENV = ("PYTHONPATH",)


class AdmissionError(Exception):
    """The API server or KServe's webhook refuses the object (helm install fails)."""


def crd_problems(runtime: dict[str, Any]) -> list[str]:
    """Violations of the ClusterServingRuntime CRD's structural schema."""
    spec = runtime.get("spec") or {}
    problems = []
    if not spec.get("containers"):
        problems.append("spec.containers: Required value")
    for i, fmt in enumerate(spec.get("supportedModelFormats") or []):
        if not fmt.get("name"):
            problems.append(f"spec.supportedModelFormats[{i}].name: Required value")
        priority = fmt.get("priority")
        if priority is not None and int(priority) < 1:
            problems.append(f"spec.supportedModelFormats[{i}].priority: Invalid value: {priority}: "
                            "should be greater than or equal to 1")
    return problems


def _auto(fmt: dict[str, Any]) -> bool:
    return bool(fmt.get("autoSelect"))  # IsAutoSelectEnabled: nil counts as false


def _same_format(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # areSupportedModelFormatsEqual: names equal ignoring case; versions both unset or equal
    return a["name"].lower() == b["name"].lower() and a.get("version") == b.get("version")


def _priority_same_within(spec: dict[str, Any]) -> str | None:
    # validateModelFormatPrioritySame: one runtime may not give one format two priorities
    seen: dict[str, Any] = {}
    for fmt in spec.get("supportedModelFormats") or []:
        if not _auto(fmt):
            continue
        if fmt["name"] in seen:
            if seen[fmt["name"]] is not None and fmt.get("priority") is not None and seen[fmt["name"]] != fmt["priority"]:
                return f"different priorities assigned for the model format {fmt['name']}"
        else:
            seen[fmt["name"]] = fmt.get("priority")
    return None


def priority_conflict(new: dict[str, Any], existing: dict[str, Any]) -> str | None:
    """validateServingRuntimePriority: the reason `new` is refused next to `existing`, or None."""
    new_spec, old_spec = new["spec"], existing["spec"]
    if bool(new_spec.get("multiModel")) != bool(old_spec.get("multiModel")):
        return None
    if old_spec.get("disabled") or new["metadata"]["name"] == existing["metadata"]["name"]:
        return None
    # compared only when both list a common protocol (an empty list shares none)
    if not set(old_spec.get("protocolVersions") or []) & set(new_spec.get("protocolVersions") or []):
        return None
    # workerSpec (multinode) is not looked at: a multinode runtime still collides
    for old_fmt in old_spec.get("supportedModelFormats") or []:
        for new_fmt in new_spec.get("supportedModelFormats") or []:
            if _auto(old_fmt) and _auto(new_fmt) and _same_format(old_fmt, new_fmt):
                p_old, p_new = old_fmt.get("priority"), new_fmt.get("priority")
                if p_old is not None and p_new is not None and int(p_old) == int(p_new):
                    return (f"same priority assigned for the model format {new_fmt['name']} in the "
                            f"clusterservingruntimes {existing['metadata']['name']} and {new['metadata']['name']}")
    return None


def blocked_env(runtime: dict[str, Any]) -> str | None:
    for c in (runtime.get("spec") or {}).get("containers") or []:
        for env in c.get("env") or []:
            if env.get("name") in BLOCKED_ENV:
                return f"setting {env['name']} in container {c['name']!r} is not allowed for security reasons"
    return None


def admit_cluster_runtime(new: dict[str, Any], existing: list[dict[str, Any]], kserve_version: str) -> None:
    """Raise AdmissionError if creating `new` next to `existing` ClusterServingRuntimes is refused."""
    name = new["metadata"]["name"]
    problems = crd_problems(new)
    if problems:
        raise AdmissionError(f"ClusterServingRuntime {name!r} is invalid: " + "; ".join(problems))
    spec = new["spec"]
    if spec.get("disabled"):
        return  # Handle: only a runtime that is not disabled is checked
    for other in existing:
        why = _priority_same_within(spec) or priority_conflict(new, other)
        if why:
            raise AdmissionError(f"admission webhook denied {name!r}: {why}")
    if at_least(kserve_version, "0.18") and (why := blocked_env(new)):
        raise AdmissionError(f"admission webhook denied {name!r}: {why}")


def install(objects: list[dict[str, Any]], existing: list[dict[str, Any]], kserve_version: str) -> list[dict[str, Any]]:
    """Create the runtimes one after another (as `helm install` does); return the cluster's runtimes after."""
    cluster = list(existing)
    for obj in objects:
        if obj.get("kind") != "ClusterServingRuntime":
            continue
        admit_cluster_runtime(obj, cluster, kserve_version)
        cluster = [o for o in cluster if o["metadata"]["name"] != obj["metadata"]["name"]] + [obj]
    return cluster


# pkg/apis/serving/v1beta1/inference_service_validation.go (same at v0.15.0 and master): IsvcNameFmt
ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def admit_inference_service(isvc: dict[str, Any], kserve_version: str) -> None:
    """The InferenceService validating webhook: `validateInferenceServiceName` on every version, and from
    v0.18.0 `validateBlockedEnvVars` over the predictor's containers, initContainers and model container
    (`predictorFrameworkContainer`)."""
    name = isvc["metadata"]["name"]
    if not ISVC_NAME.match(name):
        raise AdmissionError(f"the InferenceService {name!r} is invalid: the name must match {ISVC_NAME.pattern}")
    if not at_least(kserve_version, "0.18"):
        return
    predictor = isvc["spec"]["predictor"]
    containers = list(predictor.get("containers") or []) + list(predictor.get("initContainers") or [])
    if predictor.get("model"):
        containers.append({"name": "kserve-container", **predictor["model"]})
    if why := blocked_env({"spec": {"containers": containers}}):
        raise AdmissionError(f"the InferenceService {name!r} is invalid: {why}")
