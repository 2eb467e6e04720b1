"""Knative Serving's admission of a revision's pod spec and the rewrite it applies, with the
feature flags of a stock install (config-features).

Sources in knative/serving:
* pkg/apis/config/features.go `defaultFeaturesConfig`: multi-container Enabled,
  multi-container-probing Disabled, kubernetes.podspec-affinity / -nodeselector / -tolerations
  Disabled, kubernetes.podspec-volumes-emptydir Enabled.
* pkg/apis/serving/fieldmask.go `PodSpecMask`: affinity, nodeSelector, tolerations (and
  schedulerName, runtimeClassName, securityContext ...) are dropped unless their flag is on, and
  a dropped field that is set is an error ("must not set the field(s)"); `ContainerMask`,
  `SecurityContextMask` likewise for container fields.
* pkg/apis/serving/k8s_validation.go: `validateContainersPorts` (one port across all
  containers; none with several containers is an error), `validateContainerPorts` (name "",
  "h2c" or "http1"; TCP), `validateContainerPortBasic` (`reservedPorts` 8012, 8013, 8022,
  9090, 9091, 8008), `validateSidecarContainer` (no probes on a container without ports unless
  multi-container-probing), `validateProbe` (a named probe port must be the serving port's
  name), `reservedEnvVars` (PORT, K_SERVICE, K_CONFIGURATION, K_REVISION; sidecars may set PORT).
* pkg/reconciler/revision/resources/deploy.go `rewriteUserLivenessProbe`: the serving
  container's httpGet/tcpSocket liveness port becomes the declared port unless
  multi-container-probing is on and the probe names its own port; `PORT` env is set.
  Readiness of the serving container is run by queue-proxy against its explicit port
  (pkg/reconciler/revision/resources/queue.go, `applyReadinessProbeDefaults`).
"""

from __future__ import annotations

from typing import Any

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
}

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
}
_ALLOWED_POD_FIELDS = {"containers", "volumes", "imagePullSecrets", "serviceAccountName", "enableServiceLinks",
                       "automountServiceAccountToken", "initContainers", "topologySpreadConstraints"}
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


def knative_problems(pod_spec: dict[str, Any], features: dict[str, str] | None = None) -> list[str]:
    """Why Knative would refuse a revision with this pod spec (empty: accepted)."""
    features = {**DEFAULT_FEATURES, **(features or {})}
    problems: list[str] = []
    for key, value in pod_spec.items():
        if key in _FLAGGED_POD_FIELDS:
            if value and not _on(features, _FLAGGED_POD_FIELDS[key]):
                problems.append(f"must not set the field(s): spec.{key} (needs {_FLAGGED_POD_FIELDS[key]}: enabled)")
        elif key not in _ALLOWED_POD_FIELDS and value:
            problems.append(f"must not set the field(s): spec.{key}")
    for vol in pod_spec.get("volumes") or []:
        if "emptyDir" in vol and not _on(features, "kubernetes.podspec-volumes-emptydir"):
            problems.append(f"volume {vol['name']}: emptyDir needs kubernetes.podspec-volumes-emptydir")
    containers = pod_spec["containers"]
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
        is_serving = bool(c.get("ports"))
        reserved = RESERVED_ENV if is_serving else RESERVED_ENV - {"PORT"}
        for env in c.get("env") or []:
            if env.get("name") in reserved:
                problems.append(f"{where}.env: {env['name']} is a reserved environment variable")
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
        if is_serving and isinstance(p, str) and p != port.get("name"):
            return [f"{handlers[0]}.port: Probe port must match container port"]
        if not is_serving and not p:
            return [f"{handlers[0]}.port: Probe port must be specified"]
    return []


def admit(pod_spec: dict[str, Any], features: dict[str, str]) -> None:
    problems = knative_problems(pod_spec, features)
    if problems:
        raise KnativeRejected("; ".join(problems))


def revision_rewrite(pod_spec: dict[str, Any], features: dict[str, str]) -> None:
    """What the revision reconciler changes in the serving container (deploy.go `makeServingContainer`)."""
    name, port = serving_port(pod_spec)
    if name is None:
        return
    container = next(c for c in pod_spec["containers"] if c["name"] == name)
    container.setdefault("env", []).append({"name": "PORT", "value": str(port["containerPort"])})
    allow_custom = _on(features, "multi-container-probing")
    probe = container.get("livenessProbe")
    if probe:
        for handler in ("httpGet", "tcpSocket"):
            action = probe.get(handler)
            if action is not None and (not allow_custom or not isinstance(action.get("port"), int)
                                       or not action.get("port")):
                action["port"] = port["containerPort"]


def queue_proxy_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """Knative's sidecar (deploy.go `makeQueueContainer`), reduced to its name, ports and target."""
    _, port = serving_port(pod_spec)
    return {"name": "queue-proxy", "image": "knative-queue-proxy",
            "ports": [{"name": "http-queueadm", "containerPort": 8022}, {"name": "http-autometric", "containerPort": 9090},
                      {"name": "http-usermetric", "containerPort": 9091}, {"name": "queue-port", "containerPort": 8012}],
            "env": [{"name": "USER_PORT", "value": str(port["containerPort"])}]}
