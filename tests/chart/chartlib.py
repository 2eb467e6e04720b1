"""Helpers of the chart tests: rendering with the real Helm engine and validating objects
against the `kserve` package's generated models (and the `kubernetes` client's models for the
nested core types).

The generated model classes do not validate anything by themselves, so `validate_model` walks
the data along their `openapi_types` / `attribute_map` and reports unknown fields, wrong types
and missing required fields.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kserve.models as kserve_models
import kubernetes.client.models as k8s_models

from conformance.chart import CHART_DIR, render_chart
from conformance.pods.base import argv_value as arg_value  # noqa: F401 - the chart tests' name for it

REPO = Path(__file__).resolve().parents[2]
CHART = CHART_DIR
EXAMPLES = CHART / "examples"

# Required fields the KServe CRD declares but the generated Python models do not mark
# (openapi-generator only keeps defaults; kubernetes' pydantic models know theirs).
KSERVE_REQUIRED = {
    "V1alpha1ClusterServingRuntime": {"api_version", "kind", "metadata", "spec"},
    "V1alpha1ServingRuntimeSpec": {"containers"},
    "V1alpha1SupportedModelFormat": {"name"},
    "V1beta1InferenceService": {"api_version", "kind", "metadata", "spec"},
    "V1beta1InferenceServiceSpec": {"predictor"},
    "V1beta1ModelFormat": {"name"},
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render_chart(values)


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == kind}


def container(runtime: dict[str, Any], name: str) -> dict[str, Any]:
    for c in runtime["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise KeyError(name)


# ------------------------------------------------------------------------------------------
# model walker


def _model_class(name: str):
    return getattr(kserve_models, name, None) or getattr(k8s_models, name, None)


def _required(cls) -> set[str]:
    req = set(KSERVE_REQUIRED.get(cls.__name__, ()))
    fields = getattr(cls, "model_fields", None)  # kubernetes>=35 models are pydantic
    if fields:
        req |= {name for name, info in fields.items() if info.is_required()}
    return req


_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")


def validate_model(data: Any, type_name: str, path: str = "$") -> list[str]:
    """Return the problems of `data` (parsed YAML/JSON) against the generated model `type_name`."""
    errors: list[str] = []
    _walk(data, type_name.strip(), path, errors)
    return errors


def _walk(data: Any, t: str, path: str, errors: list[str]) -> None:
    if data is None:
        return  # an explicit null is the same as absent for the API server
    if m := _LIST.match(t):
        if not isinstance(data, list):
            errors.append(f"{path}: expected a list ({t}), got {type(data).__name__}")
            return
        for i, item in enumerate(data):
            _walk(item, m.group(1).strip(), f"{path}[{i}]", errors)
        return
    if m := _DICT.match(t):
        if not isinstance(data, dict):
            errors.append(f"{path}: expected a map ({t}), got {type(data).__name__}")
            return
        inner = (m.group(1) or m.group(2)).strip()
        for k, v in data.items():
            if not isinstance(k, str):
                errors.append(f"{path}: map key {k!r} is not a string")
            _walk(v, inner, f"{path}.{k}", errors)
        return
    primitive = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "datetime": lambda v: isinstance(v, str),
        "date": lambda v: isinstance(v, str),
        "object": lambda v: True,
    }
    if t in primitive:
        if not primitive[t](data):
            errors.append(f"{path}: expected {t}, got {type(data).__name__} {data!r}")
        return
    cls = _model_class(t)
    if cls is None:
        errors.append(f"{path}: unknown model type {t}")
        return
    if not isinstance(data, dict):
        errors.append(f"{path}: expected an object ({t}), got {type(data).__name__}")
        return
    json_to_attr = {v: k for k, v in cls.attribute_map.items()}
    for key, value in data.items():
        attr = json_to_attr.get(key)
        if attr is None:
            errors.append(f"{path}.{key}: unknown field of {t}")
            continue
        _walk(value, cls.openapi_types[attr], f"{path}.{key}", errors)
    for attr in sorted(_required(cls)):
        if data.get(cls.attribute_map[attr]) is None:
            errors.append(f"{path}.{cls.attribute_map[attr]}: required field of {t} is missing")


KIND_MODELS = {
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "V1alpha1ClusterServingRuntime",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
}


def validate_object(obj: dict[str, Any]) -> list[str]:
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in KIND_MODELS:
        return [f"no model for {key}"]
    return validate_model(obj, KIND_MODELS[key], f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}")


def runtime_as_pod(runtime: dict[str, Any]) -> dict[str, Any]:
    """The core/v1 Pod a ServingRuntime's pod template amounts to (for kubernetes-validate)."""
    spec = runtime["spec"]
    pod_spec = {"containers": spec["containers"]}
    for key in ("volumes", "nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        if spec.get(key):
            pod_spec[key] = spec[key]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": runtime["metadata"]["name"], "annotations": spec.get("annotations", {}),
                         "labels": spec.get("labels", {})},
            "spec": pod_spec}
