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
   `SetRuntimeDefaults` (runtime_defaults.py); `MergeServingRuntimeAndInferenceServiceSpecs`
   merges `spec.predictor.model` into `kserve-container` (utils.go `MergeRuntimeContainers`:
   strategic merge, and the ISVC's args appended after the runtime's on every supported release:
   `5c3e02832` #2147, 2022, "Strategic merge patch will replace args but more useful behaviour here
   is to concatenate"), pod-level fields from `MergePodSpec`; `ReplacePlaceholders` on
   kserve-container and (from v0.15.0) transformer-container; `UpdateImageTag` on kserve-container;
   the other runtime containers are appended verbatim, kserve-container first;
   `INFERENCE_SERVICE_NAME` added to every container (from v0.17.0); the predictor's metadata
   (`buildPredictorResources`/`buildObjectMeta`: runtime < ISVC < spec.predictor, each filtered
   by `ServiceAnnotationDisallowedList`, plus the `serving.kserve.io/inferenceservice` and
   `component` labels).
2. Standard mode: reconcilers/deployment/deployment_reconciler.go gives kserve-container and
   transformer-container without a readinessProbe a TCP probe on their first port, or 8080.
   Serverless mode: Knative validates the revision and rewrites the user containers (knative.py,
   per Knative version: by default the one KServe's installer sets up for that KServe version).
3. pod mutating webhook: pkg/webhook/admission/pod/storage_initializer_injector.go mounts the
   model at /mnt/models into kserve-container and transformer-container, read-only unless the
   ISVC annotation `storage.kserve.io/readonly` is "false" (`GetStorageInitializerReadOnlyFlag`;
   pkg/utils/storage.go `AddModelMount`): a storage-initializer init container, a direct PVC
   mount for pvc://, or an OCI modelcar for oci:// (`_mount_modelcar`), as the
   storage-initializer config (`storage_config`, versions.py) says; agent_injector.go adds the
   logger/batcher `agent` (`_inject_agent`); metrics_aggregate_injector.go sets Prometheus
   annotations (metrics.py). Serverless autoscaling annotations and the Standard-mode HPA/KEDA
   objects: autoscaling.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from . import autoscaling, knative, metrics
from .runtime_defaults import set_runtime_defaults, update_image_tag
from .templating import TemplateError, render_placeholders
from .versions import RAW, SERVERLESS, annotation_mode, at_least, knative_installed_by, normalize_mode, storage_config

SERVING = "kserve-container"
TRANSFORMER = "transformer-container"
MODEL_MOUNT = "/mnt/models"
MODEL_VOLUME = "kserve-provision-location"  # constants.StorageInitializerVolumeName
PVC_VOLUME = "kserve-pvc-source"  # constants.PvcSourceMountName
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


class StorageInitializerFails(Exception):
    """The pod is created but its storage-initializer init container exits with an error
    (the pod stays in Init:Error)."""


# pkg/constants/constants.go ServiceAnnotationDisallowedList (v0.15.0 and master)
ANNOTATION_DISALLOWED = ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
                         "internal.serving.kserve.io/storage-initializer-sourceuri",
                         "kubectl.kubernetes.io/last-applied-configuration", "modelFormat")


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
            # utils.go MergeRuntimeContainers, every release from 0.9 (5c3e02832):
            # mergedContainer.Args = append(append([]string{}, runtimeContainer.Args...), isvcContainer.Args...)
            merged["args"] = list(merged.get("args") or []) + list(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_maps(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    # MergeContainerWithPatch keeps a non-empty ISVC `model.name` (`if merged.Name == ""` only fills an empty one)
    merged["name"] = patch.get("name") or runtime_container["name"]
    return merged


def _merge_pod_fields(runtime_spec: dict[str, Any], predictor: dict[str, Any], kserve_version: str) -> dict[str, Any]:
    """utils.go `MergePodSpec`: only these runtime pod fields (schedulerName from v0.17.0, e3a6afb58 #5073;
    resourceClaims on master, 4123e1493 #5828), then the predictor's PodSpec over them by strategic merge:
    volumes and imagePullSecrets by name, nodeSelector and affinity merged key by key, the rest replaced."""
    keep = ["nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets"]
    keep += ["schedulerName"] if at_least(kserve_version, "0.17") else []
    keep += ["resourceClaims"] if at_least(kserve_version, "master") else []
    pod = {k: copy.deepcopy(runtime_spec[k]) for k in keep if runtime_spec.get(k)}
    for key, value in predictor.items():
        if key in _PREDICTOR_ONLY:
            continue
        if key in ("volumes", "imagePullSecrets"):
            pod[key] = _merge_list(pod.get(key) or [], value, "name")
        elif key == "affinity" and isinstance(pod.get("affinity"), dict):
            pod["affinity"] = _merge_maps(pod["affinity"], value)
        elif key == "nodeSelector":
            pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **value}
        else:
            pod[key] = copy.deepcopy(value)
    return pod


def _add_env(container: dict[str, Any], name: str, value: str) -> None:
    # utils.go AddEnvVarToPodSpec: an existing entry of that name is overwritten in place
    env = container.setdefault("env", [])
    for i, e in enumerate(env):
        if e.get("name") == name:
            env[i] = {"name": name, "value": value}
            return
    env.append({"name": name, "value": value})


def controller_pod_spec(runtime: dict[str, Any], isvc: dict[str, Any], kserve_version: str) -> dict[str, Any]:
    """What the controller puts in the Knative Service / Deployment template (`buildPodSpec`)."""
    spec = runtime["spec"]
    isvc = set_runtime_defaults(isvc, runtime, kserve_version)
    predictor = isvc["spec"]["predictor"]
    meta = isvc["metadata"]
    containers = spec.get("containers") or []
    by_name = {c["name"]: c for c in containers}
    if SERVING not in by_name:
        raise InvalidPredictorSpec(f"runtime {runtime['metadata']['name']} has no {SERVING}")
    try:
        model = predictor.get("model") or {}
        serving = render_placeholders(merge_model_into_container(by_name[SERVING], model, kserve_version), meta)
        update_image_tag(serving, model.get("runtimeVersion"), model.get("runtime"),
                         runtime["metadata"].get("annotations"), kserve_version)
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
    pod_spec = _merge_pod_fields(spec, predictor, kserve_version)
    pod_spec["containers"] = out
    return pod_spec


def _raw_default_probes(pod_spec: dict[str, Any]) -> None:
    # deployment_reconciler.go setDefaultPodSpec: terminationGracePeriodSeconds 30 when unset, and
    # special containers without readinessProbe get TCP on Ports[0] or 8080
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    for c in pod_spec["containers"]:
        if c["name"] in (SERVING, TRANSFORMER) and not c.get("readinessProbe"):
            port = (c.get("ports") or [{}])[0].get("containerPort", 8080)
            c["readinessProbe"] = {"tcpSocket": {"port": port}, "timeoutSeconds": 1, "periodSeconds": 10,
                                   "successThreshold": 1, "failureThreshold": 3}


MODELCAR_SIDECAR, MODELCAR_INIT = "modelcar", "modelcar-init"  # constants.ModelcarContainerName & co


def _mount_modelcar(pod_spec: dict[str, Any], uri: str, kserve_version: str, config: dict[str, Any]) -> None:
    """An OCI modelcar (oci:// URI with `enableModelcar`), per version:
    * v0.15.0 storage_initializer_injector.go `InjectModelcar`: MODEL_INIT_MODE=async on
      kserve-container only; a writable emptyDir `kserve-provision-location` at /mnt in
      kserve-container and transformer-container; with `uidModelcar` set, kserve-container's whole
      securityContext is *replaced* by `{runAsUser: uid}`.
    * v0.16.0-v0.17.x pkg/utils/storage.go `ConfigureModelcarToContainer`, called for both special
      containers: env and mount on both, and both securityContexts replaced by `{runAsUser: uid}`
      (storage.go:475-478 at v0.16.0, :471-472 at v0.17.0).
    * from v0.18.0 (storage.go:491-494): only `runAsUser` is set, the rest of the securityContext kept.
    Every version appends the `modelcar` sidecar, adds the `modelcar-init` init container and sets
    shareProcessNamespace (master `ModelcarNames(0)`: modelcar, modelcar-init, kserve-provision-location).
    """
    uid = config.get("uidModelcar")
    targets = (SERVING,) if not at_least(kserve_version, "0.16") else (SERVING, TRANSFORMER)
    pod_spec.setdefault("volumes", []).append({"name": MODEL_VOLUME, "emptyDir": {}})
    for c in pod_spec["containers"]:
        if c["name"] not in (SERVING, TRANSFORMER):
            continue
        c.setdefault("volumeMounts", []).append({"name": MODEL_VOLUME, "mountPath": "/mnt", "readOnly": False})
        if c["name"] not in targets:
            continue
        _set_env(c, "MODEL_INIT_MODE", "async")
        if uid is not None:
            if at_least(kserve_version, "0.18"):
                c.setdefault("securityContext", {})["runAsUser"] = uid
            else:
                c["securityContext"] = {"runAsUser": uid}
    image = uri.removeprefix("oci://")
    pod_spec["containers"].append({"name": MODELCAR_SIDECAR, "image": image,
                                   "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": "/mnt"}]})
    pod_spec.setdefault("initContainers", []).append({"name": MODELCAR_INIT, "image": image})
    pod_spec["shareProcessNamespace"] = True


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = [e for e in container.get("env") or [] if e.get("name") != name]
    container["env"] = env + [{"name": name, "value": value}]


def _mount_pvc(pod_spec: dict[str, Any], uri: str, read_only: bool) -> None:
    """pvc://NAME/PATH mounted at /mnt/models (subPath PATH) into both special containers, no
    init container: v0.15.0 storage_initializer_injector.go with `enableDirectPvcVolumeMount`
    (its default, true); always from v0.16.0."""
    name, _, sub_path = uri.removeprefix("pvc://").partition("/")
    pod_spec.setdefault("volumes", []).append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": name}})
    for c in pod_spec["containers"]:
        if c["name"] in (SERVING, TRANSFORMER):
            c.setdefault("volumeMounts", []).append({"name": PVC_VOLUME, "mountPath": MODEL_MOUNT,
                                                     "subPath": sub_path, "readOnly": read_only})


def _mount_model(pod_spec: dict[str, Any], isvc: dict[str, Any], kserve_version: str, config: dict[str, Any]) -> None:
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    if not any(c["name"] == SERVING for c in pod_spec["containers"]):
        # the pod webhook's storage injection looks kserve-container up by name and refuses the pod
        raise InvalidPredictorSpec(f"Invalid configuration: cannot find container: {SERVING}")
    if uri.startswith("oci://") and config.get("enableModelcar"):
        _mount_modelcar(pod_spec, uri, kserve_version, config)
        return
    if uri.startswith("oci://") and not at_least(kserve_version, "0.16"):
        # modelcar off: the storage initializer gets the oci:// URI, which v0.15.0
        # python/kserve/kserve/storage/storage.py `Storage.download` refuses
        # ("Cannot recognize storage type for oci://...")
        raise StorageInitializerFails(f"storage-initializer: Cannot recognize storage type for {uri} "
                                      "(KServe 0.15 needs storageInitializer.enableModelcar: true for oci://)")
    annotations = isvc["metadata"].get("annotations") or {}
    read_only = annotations.get(READONLY_ANNOTATION, "true") != "false"
    if uri.startswith("pvc://") and config.get("enableDirectPvcVolumeMount", True):
        _mount_pvc(pod_spec, uri, read_only)
        return
    volumes = pod_spec.setdefault("volumes", [])
    volumes.append({"name": MODEL_VOLUME, "emptyDir": {}})
    for c in pod_spec["containers"]:
        if c["name"] in (SERVING, TRANSFORMER):
            c.setdefault("volumeMounts", []).append({"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT,
                                                     "readOnly": read_only})
    pod_spec.setdefault("initContainers", []).append(
        {"name": "storage-initializer", "args": [uri, MODEL_MOUNT],
         "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT}]})


AGENT_PORT = 9081  # constants.InferenceServiceDefaultAgentPort


def _inject_agent(pod_spec: dict[str, Any], serverless: bool) -> None:
    """pkg/webhook/admission/pod/agent_injector.go `InjectAgent` (a logger or batcher on the predictor):
    an `agent` container on 9081 with a copy of the first container's securityContext and
    `--component-port` the first port of transformer-container (else kserve-container's, else 8080);
    under Knative queue-proxy's USER_PORT becomes 9081, in Standard mode the agent runs the
    transformer's (else the first container's) httpGet/tcpSocket readiness probe
    (`SERVING_READINESS_PROBE`) and the Service targets it (raw_service.py)."""
    containers = pod_spec["containers"]
    front = next((c for c in containers if c["name"] == TRANSFORMER), containers[0])
    port = ((front.get("ports") or [{}])[0]).get("containerPort", 8080)
    env = []
    probe = front.get("readinessProbe") or {}
    if not serverless and (probe.get("httpGet") or probe.get("tcpSocket")):
        env.append({"name": "SERVING_READINESS_PROBE", "value": json.dumps(probe, sort_keys=True)})
    path = None if serverless else (probe.get("httpGet") or {}).get("path")
    agent = {"name": "agent", "image": "kserve-agent", "args": ["--component-port", str(port)],
             "ports": [{"name": "agent-port", "containerPort": AGENT_PORT, "protocol": "TCP"}], "env": env,
             "securityContext": copy.deepcopy(containers[0].get("securityContext")),
             "readinessProbe": {"httpGet": {"port": AGENT_PORT, "path": path or "/"}}}
    for c in containers:
        if c["name"] == "queue-proxy":
            c["env"] = [{**e, "value": str(AGENT_PORT)} if e["name"] == "USER_PORT" else e for e in c["env"]]
    containers.append(agent)


def deployment_mode(isvc: dict[str, Any], cluster_default: str, kserve_version: str = "master") -> str:
    """The ISVC's deploymentMode annotation wins over the cluster's default (inferenceservice
    config) when that KServe version knows the name (versions.annotation_mode)."""
    annotation = (isvc["metadata"].get("annotations") or {}).get(MODE_ANNOTATION)
    return annotation_mode(annotation, kserve_version) or normalize_mode(cluster_default)


def _filtered(annotations: dict[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items() if k not in ANNOTATION_DISALLOWED}


def predictor_metadata(runtime_manifest: dict[str, Any], isvc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """predictor.go `buildPredictorResources` / `buildObjectMeta` (same order at v0.15.0 and
    master): runtime spec < ISVC < spec.predictor, annotations filtered by
    `ServiceAnnotationDisallowedList`, and KServe's own labels last."""
    spec, meta, predictor = runtime_manifest["spec"], isvc["metadata"], isvc["spec"]["predictor"]
    annotations = {**_filtered(spec.get("annotations")), **_filtered(meta.get("annotations")),
                   **_filtered(predictor.get("annotations"))}
    labels = {**(spec.get("labels") or {}), **(meta.get("labels") or {}), **(predictor.get("labels") or {}),
              "serving.kserve.io/inferenceservice": meta["name"], "component": "predictor"}
    return {"annotations": annotations, "labels": labels}


def assemble_pod(runtime_manifest: dict[str, Any], isvc: dict[str, Any], mode: str = RAW,
                 kserve_version: str = "master", knative_features: dict[str, str] | None = None,
                 metrics_config: dict[str, str] | None = None, knative_version: str | None = None,
                 storage_initializer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The predictor Pod (a dict) for `isvc` on `runtime_manifest`; `mode` is the cluster default
    deployment mode (the ISVC's annotation wins). `knative_version` defaults to the Knative that
    KServe's installer sets up for `kserve_version`; `storage_initializer` overrides keys of that
    version's storage-initializer config (versions.storage_initializer_config). Raises
    InvalidPredictorSpec when KServe fails the ISVC, knative.KnativeRejected when Knative refuses
    the revision or cannot build it, StorageInitializerFails when the model cannot be fetched."""
    mode = deployment_mode(isvc, mode, kserve_version)
    pod_spec = controller_pod_spec(runtime_manifest, isvc, kserve_version)
    queue_probes: list[dict[str, Any]] = []
    if mode == SERVERLESS:
        features = {**knative.DEFAULT_FEATURES, **(knative_features or {})}
        version = knative_version or knative_installed_by(kserve_version)
        knative.admit(pod_spec, features, version)
        queue_probes = knative.revision_rewrite(pod_spec, features, version, isvc["metadata"]["name"],
                                                isvc["spec"]["predictor"].get("timeout"))
        pod_spec["containers"].append(knative.queue_proxy_container(pod_spec, queue_probes))
    else:
        _raw_default_probes(pod_spec)
    if (isvc["spec"]["predictor"].get("model") or {}).get("storageUri"):
        _mount_model(pod_spec, isvc, kserve_version, {**storage_config(kserve_version, storage_initializer)})
    if isvc["spec"]["predictor"].get("logger") or isvc["spec"]["predictor"].get("batcher"):
        _inject_agent(pod_spec, mode == SERVERLESS)
    meta = predictor_metadata(runtime_manifest, isvc)
    if mode == SERVERLESS:
        meta["annotations"] = autoscaling.knative_annotations(meta["annotations"], isvc["spec"]["predictor"])
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": f"{isvc['metadata']['name']}-predictor", **meta},
           "spec": pod_spec}
    metrics.inject(pod, metrics_config)
    return pod
