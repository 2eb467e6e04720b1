"""Which runtime an InferenceService's predictor gets.

pkg/controller/v1beta1/inferenceservice/components/predictor.go, `reconcileModel`:
* with `spec.predictor.model.runtime`: that runtime (namespaced first, then cluster-scoped,
  `GetServingRuntime`); refused when disabled, when an explicitly set protocolVersion is not
  listed (`IsProtocolVersionSupported`: true when either side is empty), or when it does not
  support the format (`RuntimeSupportsModel`, where a pinned runtime counts formats whatever
  their autoSelect);
* without it: pkg/apis/serving/v1beta1/predictor_model.go `GetSupportingRuntimes`: not
  disabled, same multi-model flag, supports the format among autoSelect formats, supports the
  ISVC protocol (`GetProtocol`: v1 when unset), and `IsMultiNodeRuntime()` equal to whether the
  ISVC asks for workers. Each list (namespaced, then cluster) is first ordered by
  `sortServingRuntimeList`/`sortClusterServingRuntimeList` (`GetProtocolVersionPriority`, the
  lowest listed protocol, v1 < v2 < grpc-v1 < grpc-v2 < none; then creationTimestamp newest
  first; then name), then by `sortSupportedRuntimeByPriority` (higher priority first, a runtime
  with a priority before one without; the priority is `GetPriority(name)`: the first format of
  that exact name, whatever its autoSelect or version); namespaced runtimes before cluster ones;
  the first wins. The priority sort is `sort.SliceStable` only on master (`9ced22e00` #6021);
  v0.15.0-v0.20.0 use `sort.Slice`, so there the order of equal priorities is not defined
  (`tie_is_unordered`).
"""

from __future__ import annotations

from typing import Any


class NoSupportingRuntime(Exception):
    """The InferenceService gets no runtime (status InvalidSpec / NoSupportingRuntime)."""


def _model(isvc: dict[str, Any]) -> dict[str, Any]:
    return isvc["spec"]["predictor"].get("model") or {}


def _format_labels(formats: list[dict[str, Any]], pinned: bool) -> set[str]:
    # getServingRuntimeSupportedModelFormatLabelSet: mt:<name> and mt:<name>:<version>
    labels = set()
    for fmt in formats:
        if pinned or fmt.get("autoSelect"):
            labels.add(f"mt:{fmt['name']}")
            if fmt.get("version") is not None:
                labels.add(f"mt:{fmt['name']}:{fmt['version']}")
    return labels


def supports_format(runtime: dict[str, Any], isvc: dict[str, Any]) -> bool:
    model = _model(isvc)
    mf = model["modelFormat"]
    label = f"mt:{mf['name']}" + (f":{mf['version']}" if mf.get("version") is not None else "")
    return label in _format_labels(runtime["spec"].get("supportedModelFormats") or [], model.get("runtime") is not None)


def _protocol_ok(runtime: dict[str, Any], protocol: str | None) -> bool:
    listed = runtime["spec"].get("protocolVersions") or []
    return not listed or protocol is None or protocol in listed


def _priority(runtime: dict[str, Any], fmt_name: str) -> int | None:
    for fmt in runtime["spec"].get("supportedModelFormats") or []:
        if fmt["name"] == fmt_name:
            return fmt.get("priority")
    return None


_PROTOCOL_RANK = {"v1": 1, "v2": 2, "grpc-v1": 3, "grpc-v2": 4}


def _protocol_rank(runtime: dict[str, Any]) -> int:
    listed = runtime["spec"].get("protocolVersions") or []
    return min((_PROTOCOL_RANK.get(p, 5) for p in listed), default=5)


def presorted(runtimes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`sortClusterServingRuntimeList`: protocol rank, newest creationTimestamp, name."""
    out = sorted(runtimes, key=lambda r: r["metadata"]["name"])
    out.sort(key=lambda r: r["metadata"].get("creationTimestamp") or "", reverse=True)
    out.sort(key=_protocol_rank)
    return out


def tie_is_unordered(kserve_version: str) -> bool:
    from .versions import at_least

    return not at_least(kserve_version, "master")


def select_runtime(isvc: dict[str, Any], cluster_runtimes: list[dict[str, Any]],
                   namespaced_runtimes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The runtime object the predictor gets; NoSupportingRuntime when none."""
    model = _model(isvc)
    multinode = bool(isvc["spec"]["predictor"].get("workerSpec"))
    namespaced = list(namespaced_runtimes or [])
    pinned = model.get("runtime")
    if pinned:
        found = next((r for r in namespaced + cluster_runtimes if r["metadata"]["name"] == pinned), None)
        if found is None:
            raise NoSupportingRuntime(f"RuntimeNotRecognized: {pinned}")
        if found["spec"].get("disabled"):
            raise NoSupportingRuntime(f"specified runtime {pinned} is disabled")
        if model.get("protocolVersion") is not None and not _protocol_ok(found, model["protocolVersion"]):
            raise NoSupportingRuntime(f"specified runtime {pinned} does not support specified protocol version")
        if not supports_format(found, isvc):
            raise NoSupportingRuntime(f"specified runtime {pinned} does not support specified framework/version")
        return found
    protocol = model.get("protocolVersion") or "v1"  # GetProtocol
    fmt_name = model["modelFormat"]["name"]

    def candidates(runtimes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ok = [r for r in runtimes
              if not r["spec"].get("disabled") and not r["spec"].get("multiModel")
              and supports_format(r, isvc) and _protocol_ok(r, protocol)
              and bool(r["spec"].get("workerSpec")) == multinode]
        ok = presorted(ok)
        with_p = [r for r in ok if _priority(r, fmt_name) is not None]
        without = [r for r in ok if _priority(r, fmt_name) is None]
        return sorted(with_p, key=lambda r: -int(_priority(r, fmt_name))) + without

    ordered = candidates(namespaced) + candidates(cluster_runtimes)
    if not ordered:
        raise NoSupportingRuntime(f"no runtime found to support predictor with model type {model['modelFormat']}")
    return ordered[0]


def resulting_protocol(isvc: dict[str, Any], runtime: dict[str, Any]) -> str:
    """The protocol KServe writes into the ISVC: its own, else the runtime's lowest
    (`GetProtocolVersionPriority`: v1 < v2 < grpc-v1 < grpc-v2; predictor.go after selection), and
    `GetProtocolVersionString(Unknown)`, "", for a runtime that lists none."""
    model = _model(isvc)
    if model.get("protocolVersion"):
        return model["protocolVersion"]
    order = ["v1", "v2", "grpc-v1", "grpc-v2"]
    listed = [p for p in order if p in (runtime["spec"].get("protocolVersions") or [])]
    return listed[0] if listed else ""
