"""The Helm chart as objects: rendered by Helm's own engine, and the predictor pod KServe builds from it.

    objects = render_chart({"drainDelaySeconds": 8})
    runtime = find_runtime(objects, "kserve-huggingface-triton")
    pod = build_pod("kserve-huggingface-triton", "minilm")   # a core/v1 Pod, as KServe assembles it

Used by the release tooling (images/release.py), the chart tests and the pods of the harness
(conformance/pods).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml

from conformance.kserve_model import NEWEST, assemble_pod

REPO = Path(__file__).resolve().parents[1]
CHART_DIR = REPO / "charts" / "kserve-huggingface-runtimes"


def render_chart(values: dict[str, Any] | None = None, release: str = "emulated",
                 namespace: str = "kserve", chart_dir: Path | str = CHART_DIR) -> list[dict[str, Any]]:
    """Render the chart like `helm template` (client-side dry-run install) and return its objects."""
    from helm_python import Config

    config = Config(storage_driver="memory", namespace=namespace)
    try:
        release_info = config.install(str(chart_dir), release, values, dry_run="client", namespace=namespace)
    finally:
        with contextlib.suppress(Exception):
            config.close()
    return [doc for doc in yaml.safe_load_all(release_info.get("manifest", "")) if doc]


def find_runtime(objects: list[dict[str, Any]], runtime: str) -> dict[str, Any]:
    for obj in objects:
        if obj.get("kind") in ("ClusterServingRuntime", "ServingRuntime") and obj["metadata"]["name"] == runtime:
            return obj
    names = [o["metadata"]["name"] for o in objects if o.get("kind", "").endswith("ServingRuntime")]
    raise LookupError(f"the rendered chart has no serving runtime {runtime!r} (it has {names})")


def inference_service(runtime: str, model_name: str, namespace: str = "emulated") -> dict[str, Any]:
    """An InferenceService `model_name` that pins `runtime` and stores the model at a URI the storage
    initializer would fetch (the pods mount a local directory there instead)."""
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": model_name, "namespace": namespace},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "runtime": runtime,
                                             "storageUri": f"s3://emulated/{model_name}"}}}}


def build_pod(runtime: str, model_name: str, values: dict[str, Any] | None = None,
              kserve_version: str = NEWEST, mode: str = "RawDeployment") -> dict[str, Any]:
    """The predictor pod KServe builds for an InferenceService `model_name` pinned to `runtime`."""
    obj = find_runtime(render_chart(values), runtime)
    return assemble_pod(obj, inference_service(runtime, model_name), mode, kserve_version)
