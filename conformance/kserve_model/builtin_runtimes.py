"""The ClusterServingRuntimes a default KServe install ships, as far as admission and selection
look at them (name, supportedModelFormats, protocolVersions, multiModel, disabled, workerSpec).

Source: config/runtimes/kustomization.yaml and config/runtimes/kserve-*.yaml of kserve/kserve at
v0.15.0 (the same runtimes in charts/kserve-resources/templates/clusterservingruntimes.yaml) and
at master (commit aaac4e29, key "0.21"), where KServe's Helm chart charts/kserve-runtime-configs
(from v0.17.0) installs the same set, each `disabled: false` by default. Only the
fields the rules read are kept. 0.14 differs for huggingface: no multinode runtime (v0.14.0).
"""

from __future__ import annotations

import copy
from typing import Any


def _fmt(name: str, version: str, priority: int | None = None, auto: bool | None = True) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "version": version}
    if auto is not None:
        out["autoSelect"] = auto
    if priority is not None:
        out["priority"] = priority
    return out


def _rt(name: str, formats: list[dict], protocols: list[str], multinode: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"supportedModelFormats": formats, "protocolVersions": protocols,
                            "containers": [{"name": "kserve-container", "image": f"{name}:builtin"}]}
    if multinode:
        spec["workerSpec"] = {"containers": [{"name": "worker-container", "image": f"{name}:builtin"}]}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime",
            "metadata": {"name": name}, "spec": spec}


def _common(xgb: str, lgb: str) -> list[dict[str, Any]]:
    return [
        _rt("kserve-tensorflow-serving", [_fmt("tensorflow", "1", 2), _fmt("tensorflow", "2", 2)], ["v1", "grpc-v1"]),
        _rt("kserve-sklearnserver", [_fmt("sklearn", "1", 1)], ["v1", "v2"]),
        _rt("kserve-mlserver", [_fmt("sklearn", "0", 2), _fmt("sklearn", "1", 2), _fmt("xgboost", "1", 2),
                                _fmt("xgboost", "2", 2), _fmt("lightgbm", "3", 2), _fmt("lightgbm", "4", 2),
                                _fmt("mlflow", "1", 1), _fmt("mlflow", "2", 1)], ["v2"]),
        _rt("kserve-xgbserver", [_fmt("xgboost", xgb, 1)], ["v1", "v2"]),
        _rt("kserve-tritonserver", [_fmt("tensorrt", "8", 1), _fmt("tensorflow", "1", 1), _fmt("tensorflow", "2", 1),
                                    _fmt("onnx", "1", 1), _fmt("pytorch", "1", None, None), _fmt("triton", "2", 1)],
            ["v2", "grpc-v2"]),
        _rt("kserve-pmmlserver", [_fmt("pmml", "3", 1), _fmt("pmml", "4", 1)], ["v1", "v2"]),
        _rt("kserve-paddleserver", [_fmt("paddle", "2", 1)], ["v1", "v2"]),
        _rt("kserve-lgbserver", [_fmt("lightgbm", lgb, 1)], ["v1", "v2"]),
        _rt("kserve-torchserve", [_fmt("pytorch", "1", 2)], ["v1", "v2", "grpc-v2"]),
        # config/runtimes/kserve-huggingfaceserver.yaml
        _rt("kserve-huggingfaceserver", [_fmt("huggingface", "1", 1)], ["v2", "v1"]),
    ]


_MULTINODE = _rt("kserve-huggingfaceserver-multinode", [_fmt("huggingface", "1", 2)], ["v2", "v1"], multinode=True)

_BY_VERSION: dict[str, list[dict[str, Any]]] = {
    "0.14": _common("1", "3"),
    "0.15": _common("1", "3") + [_MULTINODE],
    "0.21": _common("2", "4") + [
        _MULTINODE,
        _rt("kserve-predictiveserver", [_fmt("sklearn", "1", 3, False), _fmt("xgboost", "2", 3, False),
                                        _fmt("lightgbm", "4", 3, False)], ["v1", "v2"]),
        _rt("kserve-autogluonserver", [_fmt("autogluon", "1", 1)], ["v1", "v2"]),
        _rt("kserve-vllmserver", [_fmt("vLLM", "1", 1)], []),
    ],
}


def builtin_runtimes(kserve_version: str) -> list[dict[str, Any]]:
    """A fresh copy of the built-in ClusterServingRuntimes of that KServe release."""
    from .versions import minor

    wanted = minor(kserve_version)
    # 0.16-0.20: the nearest list below; their huggingface runtimes (the only ones the chart's
    # admission and selection compare with) are those of 0.15 and master (kserve-huggingfaceserver
    # priority 1, -multinode priority 2; config/runtimes at each tag)
    known = sorted((minor(k), k) for k in _BY_VERSION if minor(k) <= wanted)
    if not known or wanted > 21:
        raise KeyError(f"no built-in runtime list for KServe {kserve_version} (known: {sorted(_BY_VERSION)})")
    return copy.deepcopy(_BY_VERSION[known[-1][1]])
