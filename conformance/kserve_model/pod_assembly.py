"""The predictor pod KServe (and, in Serverless mode, Knative) builds from a runtime and an
InferenceService.

    pod = assemble_pod(runtime_manifest, isvc, mode="RawDeployment", kserve_version="0.21")
    pod["spec"]["containers"]  # kserve-container, transformer-container, other runtime containers

`assemble_pod` returns a core/v1 Pod as a dict (metadata.annotations/labels and spec) without
what the cluster adds beside our containers that cannot run here: in Serverless mode the last
container is Knative's `queue-proxy` (image and args left out), and the storage initializer is
listed in `initContainers`; the pod emulation runs neither. Steps, in KServe's
order:

1. controller, pkg/controller/v1beta1/inferenceservice/components/predictor.go `buildPodSpec`:
   `MergeServingRuntimeAndInferenceServiceSpecs` merges `spec.predictor.model` into
   `kserve-container` (utils.go `MergeRuntimeContainers`: strategic merge; args appended from
   v0.20.0, replaced before), pod-level fields from `MergePodSpec`; `ReplacePlaceholders` on
   kserve-container and (from v0.15.0) transformer-container; the other runtime containers are
   appended verbatim, kserve-container first; `INFERENCE_SERVICE_NAME` added to every container
   (from v0.17.0).
2. Standard mode: reconcilers/deployment/deployment_reconciler.go gives kserve-container and
   transformer-container without a readinessProbe a TCP probe on their first port, or 8080.
   Serverless mode: Knative validates the revision (see knative.py) and rewrites the serving
   container's liveness probe (pkg/reconciler/revision/resources/deploy.go).
3. pod mutating webhook: pkg/webhook/admission/pod/storage_initializer_injector.go mounts the
   model at /mnt/models into kserve-container and transformer-container, read-only unless the
   ISVC annotation `storage.kserve.io/readonly` is "false" (`GetStorageInitializerReadOnlyFlag`;
   pkg/utils/storage.go `AddModelMount`); metrics_aggregate_injector.go sets Prometheus
   annotations (metrics.py).
"""

from __future__ import annotations

import copy
from typing import Any

from . import knative, metrics
from .templating import TemplateError, render_placeholders
from .versions import RAW, SERVERLESS, at_least, normalize_mode

SERVING = "kserve-container"
TRANSFORMER = "transformer-container"
MODEL_MOUNT = "/mnt/models"
MODEL_VOLUME = "kserve-provision-location"  # constants.StorageInitializerVolumeName
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
READONLY_ANNOTATION = "storage.kserve.io/readonly"

# fields of spec.predictor.model that are not corev1.Container fields
_MODEL_ONLY = {"modelFormat", "runtime", "storageUri", "storage", "protocolVersion", "runtimeVersion"}
# fields of spec.predictor that are not corev1.PodSpec fields (ComponentExtensionSpec & co)
_PREDICTOR_ONLY = {"model", "containers", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
                   "scaleMetricType", "autoScaling", "containerConcurrency", "timeout", "canaryTrafficPercent",
                   "logger", "batcher", "labels", "annotations", "deploymentStrategy", "workerSpec", "name",
                   "storageUris"}
# strategic-merge keys of corev1.Container lists
_MERGE_KEYS = {"env": "name", "ports": "containerPort", "volumeMounts": "mountPath"}


class InvalidPredictorSpec(Exception):
    """The InferenceService fails (status InvalidPredictorSpec or a refused revision)."""


def _merge_list(base: list[dict], patch: list[dict], key: str) -> list[dict]:
    out = [copy.deepcopy(x) for x in base]
    for item in patch:
        for i, existing in enumerate(out):
            if existing.get(key) == item.get(key):
                out[i] = {**existing, **copy.deepcopy(item)}
                break
        else:
            out.append(copy.deepcopy(item))
    return out


def _merge_maps(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _merge_maps(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def merge_model_into_container(runtime_container: dict[str, Any], model: dict[str, Any],
                               kserve_version: str) -> dict[str, Any]:
    """utils.go `MergeRuntimeContainers`: the ISVC's model spec patched over kserve-container."""
    patch = {k: v for k, v in model.items() if k not in _MODEL_ONLY}
    merged = copy.deepcopy(runtime_container)
    for key, value in patch.items():
        if key in _MERGE_KEYS:
            merged[key] = _merge_list(merged.get(key) or [], value, _MERGE_KEYS[key])
        elif key == "args":
            # v0.20.0 added "Concatenate args rather than replacing"; before, a list without a
            # patch strategy is replaced by the strategic merge patch
            merged["args"] = (list(merged.get("args") or []) + list(value)) if at_least(kserve_version, "0.20") \
                else list(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_maps(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    merged["name"] = runtime_container["name"]
    return merged


def _merge_pod_fields(runtime_spec: dict[str, Any], predictor: dict[str, Any]) -> dict[str, Any]:
    """utils.go `MergePodSpec`: only these runtime pod fields, then the predictor's PodSpec over them."""
    keep = ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets", "schedulerName", "resourceClaims")
    pod = {k: copy.deepcopy(runtime_spec[k]) for k in keep if runtime_spec.get(k)}
    for key, value in predictor.items():
        if key in _PREDICTOR_ONLY:
            continue
        if key == "volumes":
            pod["volumes"] = _merge_list(pod.get("volumes") or [], value, "name")
        elif key == "nodeSelector":
            pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **value}
        else:
            pod[key] = copy.deepcopy(value)
    return pod


def _add_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    if not any(e.get("name") == name for e in env):
        env.append({"name": name, "value": value})


def controller_pod_spec(runtime: dict[str, Any], isvc: dict[str, Any], kserve_version: str) -> dict[str, Any]:
    """What the controller puts in the Knative Service / Deployment template (`buildPodSpec`)."""
    spec = runtime["spec"]
    predictor = isvc["spec"]["predictor"]
    meta = isvc["metadata"]
    containers = spec.get("containers") or []
    by_name = {c["name"]: c for c in containers}
    if SERVING not in by_name:
        raise InvalidPredictorSpec(f"runtime {runtime['metadata']['name']} has no {SERVING}")
    try:
        serving = render_placeholders(merge_model_into_container(by_name[SERVING], predictor.get("model") or {},
                                                                 kserve_version), meta)
        out = [serving]
        if TRANSFORMER in by_name:
            if at_least(kserve_version, "0.15"):
                # a predictor.containers entry with the same name is merged over it
                extra = next((c for c in predictor.get("containers") or [] if c["name"] == TRANSFORMER), None)
                transformer = merge_model_into_container(by_name[TRANSFORMER], extra, kserve_version) if extra \
                    else by_name[TRANSFORMER]
                out.append(render_placeholders(transformer, meta))
            else:
                # v0.14.0 predictor.go: containers before kserve-container appended verbatim
                pass
    except TemplateError as exc:
        raise InvalidPredictorSpec(f"{exc}") from exc
    if at_least(kserve_version, "0.15"):
        out += [copy.deepcopy(c) for c in containers if c["name"] not in (SERVING, TRANSFORMER)]
    else:
        idx = [c["name"] for c in containers].index(SERVING)
        out += [copy.deepcopy(c) for i, c in enumerate(containers) if i != idx]
    merged_names = {c["name"] for c in out}
    out += [copy.deepcopy(c) for c in predictor.get("containers") or [] if c["name"] not in merged_names]
    if at_least(kserve_version, "0.17"):
        for c in out:
            _add_env(c, "INFERENCE_SERVICE_NAME", meta["name"])
    pod_spec = _merge_pod_fields(spec, predictor)
    pod_spec["containers"] = out
    return pod_spec


def _raw_default_probes(pod_spec: dict[str, Any]) -> None:
    # deployment_reconciler.go: special containers without readinessProbe get TCP on Ports[0] or 8080
    for c in pod_spec["containers"]:
        if c["name"] in (SERVING, TRANSFORMER) and not c.get("readinessProbe"):
            port = (c.get("ports") or [{}])[0].get("containerPort", 8080)
            c["readinessProbe"] = {"tcpSocket": {"port": port}, "timeoutSeconds": 1, "periodSeconds": 10,
                                   "successThreshold": 1, "failureThreshold": 3}


MODELCAR_UID = 1010  # config/configmap/inferenceservice.yaml storageInitializer "uidModelcar"


def _mount_modelcar(pod_spec: dict[str, Any], uri: str) -> None:
    """pkg/utils/storage.go `ConfigureModelcarToContainer` (oci:// URIs; `InjectModelcar` applies it to
    transformer-container too): a writable emptyDir at /mnt, MODEL_INIT_MODE=async (the model appears
    once the modelcar sidecar runs), runAsUser uidModelcar, the modelcar sidecar appended, and
    shareProcessNamespace."""
    pod_spec.setdefault("volumes", []).append({"name": "kserve-modelcar", "emptyDir": {}})
    for c in pod_spec["containers"]:
        if c["name"] in (SERVING, TRANSFORMER):
            _set_env(c, "MODEL_INIT_MODE", "async")
            c.setdefault("volumeMounts", []).append({"name": "kserve-modelcar", "mountPath": "/mnt", "readOnly": False})
            c.setdefault("securityContext", {})["runAsUser"] = MODELCAR_UID
    pod_spec["containers"].append({"name": "modelcar", "image": uri.removeprefix("oci://"),
                                   "volumeMounts": [{"name": "kserve-modelcar", "mountPath": "/mnt"}]})
    pod_spec["shareProcessNamespace"] = True


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = [e for e in container.get("env") or [] if e.get("name") != name]
    container["env"] = env + [{"name": name, "value": value}]


def _mount_model(pod_spec: dict[str, Any], isvc: dict[str, Any]) -> None:
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    if uri.startswith("oci://"):
        _mount_modelcar(pod_spec, uri)
        return
    annotations = isvc["metadata"].get("annotations") or {}
    read_only = annotations.get(READONLY_ANNOTATION, "true") != "false"
    volumes = pod_spec.setdefault("volumes", [])
    volumes.append({"name": MODEL_VOLUME, "emptyDir": {}})
    for c in pod_spec["containers"]:
        if c["name"] in (SERVING, TRANSFORMER):
            c.setdefault("volumeMounts", []).append({"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT,
                                                     "readOnly": read_only})
    pod_spec["initContainers"] = [{"name": "storage-initializer",
                                   "args": [isvc["spec"]["predictor"]["model"]["storageUri"], MODEL_MOUNT],
                                   "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT}]}]


def deployment_mode(isvc: dict[str, Any], cluster_default: str) -> str:
    """The ISVC's deploymentMode annotation wins over the cluster's default (inferenceservice config)."""
    annotation = (isvc["metadata"].get("annotations") or {}).get(MODE_ANNOTATION)
    return normalize_mode(annotation or cluster_default)


def assemble_pod(runtime_manifest: dict[str, Any], isvc: dict[str, Any], mode: str = RAW,
                 kserve_version: str = "0.21", knative_features: dict[str, str] | None = None,
                 metrics_config: dict[str, str] | None = None) -> dict[str, Any]:
    """The predictor Pod (a dict) for `isvc` on `runtime_manifest`; `mode` is the cluster default
    deployment mode (the ISVC's annotation wins). Raises InvalidPredictorSpec when KServe fails
    the ISVC and knative.KnativeRejected when Knative refuses the revision."""
    mode = deployment_mode(isvc, mode)
    pod_spec = controller_pod_spec(runtime_manifest, isvc, kserve_version)
    if mode == SERVERLESS:
        features = {**knative.DEFAULT_FEATURES, **(knative_features or {})}
        knative.admit(pod_spec, features)
        knative.revision_rewrite(pod_spec, features)
        pod_spec["containers"].append(knative.queue_proxy_container(pod_spec))
    else:
        _raw_default_probes(pod_spec)
    if (isvc["spec"]["predictor"].get("model") or {}).get("storageUri"):
        _mount_model(pod_spec, isvc)
    runtime_spec = runtime_manifest["spec"]
    # buildObjectMeta (predictor.go): runtime spec.annotations/labels, then the ISVC's
    annotations = {**(runtime_spec.get("annotations") or {}), **(isvc["metadata"].get("annotations") or {})}
    labels = {**(runtime_spec.get("labels") or {}), **(isvc["metadata"].get("labels") or {})}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{isvc['metadata']['name']}-predictor", "annotations": annotations, "labels": labels},
           "spec": pod_spec}
    metrics.inject(pod, metrics_config)
    return pod
