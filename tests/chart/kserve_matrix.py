"""The configurations the chart supports, for the KServe/Knative model (conformance.kserve_model):
one `ci/<scenario>-values.yaml` per scenario (chart-testing's convention, so `ct lint` and
`ct install` use the same files on a real cluster), whose header states the deployment modes
and the Knative config-features flags it needs, plus the example InferenceServices."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from conformance.kserve_model import SUPPORTED

from .chartlib import CHART, EXAMPLES, render

CI_DIR = CHART / "ci"
MODES = ("Serverless", "RawDeployment")
VERSIONS = SUPPORTED
HF, TRITON = "kserve-huggingface", "kserve-huggingface-triton"


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    values: dict[str, Any]
    modes: tuple[str, ...]
    knative_flags: dict[str, str] = field(default_factory=dict)


def _header(text: str, key: str) -> str | None:
    m = re.search(rf"^# {key}:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else None


def scenarios() -> list[Scenario]:
    out = []
    for path in sorted(CI_DIR.glob("*-values.yaml")):
        text = path.read_text()
        modes = tuple(m.strip() for m in (_header(text, "modes") or "").split(",") if m.strip())
        flags_line = _header(text, "knative-flags") or "none"
        flags = {} if flags_line == "none" else dict(f.strip().split("=", 1) for f in flags_line.split(","))
        out.append(Scenario(path.name.removesuffix("-values.yaml"), path, yaml.safe_load(text) or {}, modes, flags))
    return out


@cache
def rendered(scenario_name: str) -> tuple[dict[str, Any], ...]:
    scenario = next(s for s in scenarios() if s.name == scenario_name)
    return tuple(render(scenario.values or None))


def runtimes_of(scenario_name: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: copy.deepcopy(o) for o in rendered(scenario_name) if o["kind"] == "ClusterServingRuntime"}


def examples() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(EXAMPLES.glob("*.yaml"))}


def isvc(name: str, runtime: str | None = None, storage: str = "s3://bucket/minilm", **model: Any) -> dict[str, Any]:
    """A minimal InferenceService naming the huggingface format (and a runtime when given)."""
    spec_model: dict[str, Any] = {"modelFormat": {"name": "huggingface"}, "storageUri": storage, **model}
    if runtime:
        spec_model["runtime"] = runtime
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": "models"}, "spec": {"predictor": {"model": spec_model}}}


def listening(pod: dict[str, Any]) -> dict[int, tuple[str, str, str]]:
    """Ports something listens on inside the pod: port -> (container, "http"|"grpc", bind address),
    from the chart's --http_port/--grpc_port/--bind_address arguments."""
    out: dict[int, tuple[str, str]] = {}
    for c in pod["spec"]["containers"]:
        if c["name"] == "queue-proxy":
            continue
        args = dict(a.split("=", 1) for a in c.get("args") or [] if a.startswith("--") and "=" in a)
        for flag, kind in (("--http_port", "http"), ("--grpc_port", "grpc")):
            if flag in args:
                out[int(args[flag])] = (c["name"], kind, args.get("--bind_address", "0.0.0.0"))
    return out
