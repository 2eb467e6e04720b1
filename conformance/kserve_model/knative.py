"""Knative Serving's admission of a revision's pod spec and the rewrite it applies, with the
feature flags of a stock install (config-features), per Knative version ("1.MINOR", see
versions.py; default: the newest, knative-v1.23.0).

Sources in knative/serving (the same at knative-v1.15.2, -v1.17.0, -v1.21.1 and main unless a
rule names the tag where it changed):
* pkg/apis/config/features.go `defaultFeaturesConfig`: multi-container Enabled,
  multi-container-probing Disabled, kubernetes.podspec-affinity / -nodeselector / -tolerations /
  -init-containers / -topologyspreadconstraints / -fieldref / -persistent-volume-claim ...
  Disabled, kubernetes.podspec-volumes-emptydir Enabled.
* pkg/apis/serving/fieldmask.go `PodSpecMask`: affinity, nodeSelector, tolerations,
  initContainers, topologySpreadConstraints (and schedulerName, runtimeClassName,
  securityContext, shareProcessNamespace, priorityClassName, hostAliases, dnsPolicy, dnsConfig)
  are dropped unless their flag is on, and a dropped field that is set is an error ("must not set
  the field(s)"); `ContainerMask`, `SecurityContextMask`, `CapabilitiesMask` (capabilities.add
  needs kubernetes.containerspec-addcapabilities), `EnvVarSourceMask` (valueFrom.fieldRef and
  resourceFieldRef need kubernetes.podspec-fieldref) and `VolumeSourceMask` (secret, configMap,
  projected; emptyDir and persistentVolumeClaim behind their flags; every other type refused).
* pkg/apis/serving/k8s_validation.go: `validateContainersPorts` (one port across all
  containers; none with several containers is an error), `validateContainerPorts` (name "",
  "h2c" or "http1"; TCP), `validateContainerPortBasic` (`reservedPorts` 8012, 8013, 8022,
  9090, 9091, 8008), `validateSidecarContainer` (no liveness/readiness probe on a container
  without ports unless multi-container-probing; a startupProbe there only from knative-v1.23.0,
  `dbaab46874` #16594), `validateProbe` (a named probe port must be the serving port's name,
  "http" when unnamed), `reservedEnvVars` (PORT, K_SERVICE, K_CONFIGURATION, K_REVISION;
  sidecars may set PORT), `ValidateVolumes` (every volume mounted, every mount has a volume).
* pkg/reconciler/revision/resources/queue.go `makeQueueContainer`: with multi-container-probing,
  a sidecar readiness probe needs an httpGet/tcpSocket/grpc port, else "sidecar readiness probe
  does not define probe port on container" and the revision gets no Deployment, before
  knative-v1.18.0 (`c7f03afb49` "Support exec readiness probes for sidecar containers" #15773
  skips an exec probe, which stays with the kubelet). queue-proxy serves on 8012 (8013 for h2c).
* pkg/reconciler/revision/resources/deploy.go `makeContainer` / `makeServingContainer` /
  `BuildPodSpec`: every user container gets the preStop hook `httpGet :8022/wait-for-drain`,
  `K_REVISION`/`K_CONFIGURATION`/`K_SERVICE` env, and loses its httpGet/tcpSocket/grpc
  readiness probe (queue-proxy runs it, `applyReadinessProbeDefaults`: host 127.0.0.1); the
  serving container gets `PORT` and its liveness port rewritten (`rewriteUserLivenessProbe`)
  to the declared port, keeping a custom one with multi-container-probing only from
  knative-v1.22.0 (`b85cf85d31` #16572); `terminationGracePeriodSeconds` is the revision's
  `timeoutSeconds` (config-defaults `revision-timeout-seconds`: 300).
"""

from __future__ import annotations

import json
from typing import Any

from .versions import KNATIVE_NEWEST, knative_at_least

ENABLED, DISABLED = "enabled", "disabled"

DEFAULT_FEATURES: dict[str, str] = {
    "multi-container": ENABLED,
    "multi-container-probing": DISABLED,
    "kubernetes.podspec-affinity": DISABLED,
    "kubernetes.podspec-nodeselector": DISABLED,
    "kubernetes.podspec-tolerations": DISABLED,
    "kubernetes.podspec-schedulername": DISABLED,
    "kubernetes.podspec-runtimeclassname": DISABLED,
    "kubernetes.podspec-securitycontext": DISABLED,
    "kubernetes.podspec-volumes-emptydir": ENABLED,
    "kubernetes.podspec-init-containers": DISABLED,
    "kubernetes.podspec-topologyspreadconstraints": DISABLED,
    "kubernetes.podspec-fieldref": DISABLED,
    "kubernetes.podspec-persistent-volume-claim": DISABLED,
    "kubernetes.containerspec-addcapabilities": DISABLED,
}
REVISION_TIMEOUT_SECONDS = 300  # config/core/configmaps/defaults.yaml revision-timeout-seconds
QUEUE_ADMIN_PORT = 8022  # knative.dev/networking QueueAdminPort; preStop path /wait-for-drain

RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
PORT_NAMES = {"", "h2c", "http1"}
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
_FLAGGED_POD_FIELDS = {
    "affinity": "kubernetes.podspec-affinity",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "tolerations": "kubernetes.podspec-tolerations",
    "schedulerName": "kubernetes.podspec-schedulername",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "securityContext": "kubernetes.podspec-securitycontext",
    "initContainers": "kubernetes.podspec-init-containers",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
}
_ALLOWED_POD_FIELDS = {"containers", "volumes", "imagePullSecrets", "serviceAccountName", "enableServiceLinks",
                       "automountServiceAccountToken"}
# VolumeSourceMask: allowed volume sources, and those behind a flag
_VOLUME_SOURCES = {"secret": None, "configMap": None, "projected": None,
                   "emptyDir": "kubernetes.podspec-volumes-emptydir",
                   "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim"}
_RESERVED_MOUNT_PATHS = {"/", "/dev", "/dev/log"}
_ALLOWED_CONTAINER_FIELDS = {"name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy",
                             "livenessProbe", "ports", "readinessProbe", "resources", "securityContext",
                             "startupProbe", "terminationMessagePath", "terminationMessagePolicy", "volumeMounts"}
_ALLOWED_SECURITY_CONTEXT = {"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
                             "allowPrivilegeEscalation", "seccompProfile"}
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


class KnativeRejected(Exception):
    """Knative's webhook refuses the revision: the InferenceService never becomes ready."""


def _on(features: dict[str, str], name: str) -> bool:
    return features.get(name, DEFAULT_FEATURES.get(name, DISABLED)).lower() in (ENABLED, "allowed")


def serving_port(pod_spec: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(container name, port) of the declared serving port; Knative's default 8080/"http" when none."""
    for c in pod_spec["containers"]:
        if c.get("ports"):
            return c["name"], c["ports"][0]
    return None, {"name": "http", "containerPort": 8080}


def knative_problems(pod_spec: dict[str, Any], features: dict[str, str] | None = None,
                     version: str = KNATIVE_NEWEST) -> list[str]:
    """Why Knative's webhook would refuse a revision with this pod spec (empty: accepted)."""
    features = {**DEFAULT_FEATURES, **(features or {})}
    problems: list[str] = []
    for key, value in pod_spec.items():
        if key in _FLAGGED_POD_FIELDS:
            if value and not _on(features, _FLAGGED_POD_FIELDS[key]):
                problems.append(f"must not set the field(s): spec.{key} (needs {_FLAGGED_POD_FIELDS[key]}: enabled)")
        elif key not in _ALLOWED_POD_FIELDS and value:
            problems.append(f"must not set the field(s): spec.{key}")
    containers = pod_spec["containers"]
    mounted = {m.get("name") for c in containers for m in c.get("volumeMounts") or []}
    for vol in pod_spec.get("volumes") or []:
        for source in (k for k in vol if k != "name"):
            if source not in _VOLUME_SOURCES:
                problems.append(f"volume {vol['name']}: must not set the field(s): {source}")
            elif (flag := _VOLUME_SOURCES[source]) and not _on(features, flag):
                problems.append(f"volume {vol['name']}: {source} needs {flag}: enabled")
        if vol["name"] not in mounted:
            problems.append(f"volume with name {vol['name']!r} not mounted")
    volume_names = {v["name"] for v in pod_spec.get("volumes") or []}
    if len(containers) > 1 and not _on(features, "multi-container"):
        problems.append(f"multi-container is off, but found {len(containers)} containers")
    count = sum(len(c.get("ports") or []) for c in containers)
    if count == 0 and len(containers) > 1:
        problems.append("missing field(s): ports")
    if count > 1:
        problems.append("more than one container port is set: Only a single port is allowed across all containers")
    _, port = serving_port(pod_spec)
    for c in containers:
        where = f"containers[{c['name']}]"
        for key in c:
            if key not in _ALLOWED_CONTAINER_FIELDS:
                problems.append(f"must not set the field(s): {where}.{key}")
        for key in (c.get("securityContext") or {}):
            if key not in _ALLOWED_SECURITY_CONTEXT:
                problems.append(f"must not set the field(s): {where}.securityContext.{key}")
        if ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") \
                and not _on(features, "kubernetes.containerspec-addcapabilities"):
            problems.append(f"must not set the field(s): {where}.securityContext.capabilities.add "
                            "(needs kubernetes.containerspec-addcapabilities: enabled)")
        paths = [m.get("mountPath") for m in c.get("volumeMounts") or []]
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volume_names:
                problems.append(f"{where}.volumeMounts.{m.get('name')}: volumeMount has no matching volume")
            if m.get("mountPath") in _RESERVED_MOUNT_PATHS:
                problems.append(f"{where}.volumeMounts: mountPath {m['mountPath']} is a reserved path")
        if len(paths) != len(set(paths)):
            problems.append(f"{where}.volumeMounts: mountPath must be unique")
        is_serving = bool(c.get("ports"))
        reserved = RESERVED_ENV if is_serving else RESERVED_ENV - {"PORT"}
        for env in c.get("env") or []:
            if env.get("name") in reserved:
                problems.append(f"{where}.env: {env['name']} is a reserved environment variable")
            source = env.get("valueFrom") or {}
            if (source.get("fieldRef") or source.get("resourceFieldRef")) \
                    and not _on(features, "kubernetes.podspec-fieldref"):
                problems.append(f"{where}.env.{env.get('name')}: must not set the field(s): valueFrom.fieldRef "
                                "(needs kubernetes.podspec-fieldref: enabled)")
        if is_serving:
            user = c["ports"][0]
            if user.get("containerPort") in RESERVED_PORTS:
                problems.append(f"{where}.ports: {user['containerPort']} is a reserved port")
            if user.get("name", "") not in PORT_NAMES:
                problems.append(f"{where}.ports: Port name {user.get('name')} is not allowed")
            if user.get("protocol", "TCP") != "TCP":
                problems.append(f"{where}.ports: invalid protocol {user.get('protocol')}")
        for probe_key in _PROBES:
            probe = c.get(probe_key)
            if not probe:
                continue
            if not is_serving and probe_key == "startupProbe" and not knative_at_least(version, "1.23"):
                continue  # validateSidecarContainer checks only liveness and readiness before 1.23
            if not is_serving and not _on(features, "multi-container-probing"):
                problems.append(f"{where}.{probe_key}: must not set the field(s) "
                                "(probes on a non-serving container need multi-container-probing: enabled)")
                continue
            problems += [f"{where}.{probe_key}: {p}" for p in _probe_problems(probe, port, is_serving)]
    return problems


def _probe_problems(probe: dict[str, Any], port: dict[str, Any], is_serving: bool) -> list[str]:
    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if probe.get(h)]
    if len(handlers) != 1:
        return [f"expected exactly one of httpGet, tcpSocket, exec, grpc (got {handlers})"]
    action = probe[handlers[0]]
    if handlers[0] in ("httpGet", "tcpSocket"):
        p = action.get("port")
        if is_serving and isinstance(p, str) and p != (port.get("name") or "http"):
            return [f"{handlers[0]}.port: Probe port must match container port"]
        if not is_serving and not p:
            return [f"{handlers[0]}.port: Probe port must be specified"]
    return []


def reconciler_problems(pod_spec: dict[str, Any], features: dict[str, str],
                        version: str = KNATIVE_NEWEST) -> list[str]:
    """Why the revision reconciler cannot build the Deployment of an admitted revision (queue.go
    `makeQueueContainer`): the InferenceService is accepted and never becomes ready."""
    if not _on(features, "multi-container-probing"):
        return []
    problems = []
    for c in pod_spec["containers"]:
        probe = c.get("readinessProbe")
        if c.get("ports") or not probe:
            continue
        if probe.get("exec") and knative_at_least(version, "1.18"):
            continue
        if not any(isinstance((probe.get(h) or {}).get("port"), int) and probe[h]["port"] > 0
                   for h in ("httpGet", "tcpSocket", "grpc")):
            problems.append(f"sidecar readiness probe does not define probe port on container: {c['name']}")
    return problems


def admit(pod_spec: dict[str, Any], features: dict[str, str], version: str = KNATIVE_NEWEST) -> None:
    problems = knative_problems(pod_spec, features, version) + reconciler_problems(pod_spec, features, version)
    if problems:
        raise KnativeRejected("; ".join(problems))


def revision_rewrite(pod_spec: dict[str, Any], features: dict[str, str], version: str = KNATIVE_NEWEST,
                     isvc_name: str = "isvc", timeout_seconds: int | None = None) -> list[dict[str, Any]]:
    """What the revision reconciler changes in the user containers (deploy.go `makeContainer`,
    `makeServingContainer`, `BuildPodSpec`); returns the readiness probes queue-proxy runs."""
    name, port = serving_port(pod_spec)
    if name is None and len(pod_spec["containers"]) == 1:
        name = pod_spec["containers"][0]["name"]
    revision = f"{isvc_name}-predictor-00001"
    queue_probes = []
    for c in pod_spec["containers"]:
        c["lifecycle"] = {"preStop": {"httpGet": {"port": QUEUE_ADMIN_PORT, "path": "/wait-for-drain"}}}
        c["env"] = (c.get("env") or []) + [{"name": "K_REVISION", "value": revision},
                                            {"name": "K_CONFIGURATION", "value": f"{isvc_name}-predictor"},
                                            {"name": "K_SERVICE", "value": f"{isvc_name}-predictor"}]
        probe = c.get("readinessProbe")
        if probe and any(probe.get(h) for h in ("httpGet", "tcpSocket", "grpc")):
            queue_probes.append({"container": c["name"], **c.pop("readinessProbe")})
    pod_spec["terminationGracePeriodSeconds"] = timeout_seconds or REVISION_TIMEOUT_SECONDS
    if name is None:
        return queue_probes
    container = next(c for c in pod_spec["containers"] if c["name"] == name)
    container["env"].append({"name": "PORT", "value": str(port["containerPort"])})
    allow_custom = knative_at_least(version, "1.22") and _on(features, "multi-container-probing")
    probe = container.get("livenessProbe")
    if probe:
        for handler in ("httpGet", "tcpSocket"):
            action = probe.get(handler)
            if action is not None and (not allow_custom or not isinstance(action.get("port"), int)
                                       or not action.get("port")):
                action["port"] = port["containerPort"]
    return queue_probes


def queue_proxy_container(pod_spec: dict[str, Any], readiness: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Knative's sidecar (queue.go `makeQueueContainer`), reduced to its name, ports, target and the
    readiness probes it runs (`SERVING_READINESS_PROBE`)."""
    _, port = serving_port(pod_spec)
    h2c = port.get("name") == "h2c"
    queue_port = {"name": "queue-port", "containerPort": 8013 if h2c else 8012}
    return {"name": "queue-proxy", "image": "knative-queue-proxy",
            "ports": [{"name": "http-queueadm", "containerPort": QUEUE_ADMIN_PORT},
                      {"name": "http-autometric", "containerPort": 9090},
                      {"name": "http-usermetric", "containerPort": 9091}, queue_port],
            "env": [{"name": "USER_PORT", "value": str(port["containerPort"])},
                    {"name": "SERVING_READINESS_PROBE", "value": json.dumps(readiness or [])}]}
