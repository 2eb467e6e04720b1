"""What KServe's controller changes because of which runtime an InferenceService got: the
server type (runtime name, or from v0.17.0 the ServingRuntime's metadata annotation
`serving.kserve.io/server-type`), `SetRuntimeDefaults` and `UpdateImageTag`.

* pkg/constants/constants.go `GetServerTypeFromRuntimeName`: kserve-mlserver, kserve-torchserve,
  kserve-tritonserver, kserve-tensorflow-serving, kserve-huggingfaceserver, kserve-vllmserver.
* pkg/apis/serving/v1beta1/inference_service_defaults.go `SetRuntimeDefaults`, called by
  predictor.go `reconcileModel` once the runtime is known: v0.15.0/v0.16.0 compare the runtime
  *name* only; from v0.17.0 the metadata annotation comes first. `tritonserver` defaults the
  protocol to v2 and, with no storageUri/storage, appends `--model-control-mode=explicit` to the
  model args (so to kserve-container); mlserver and torchserve default the protocol too.
* pkg/controller/v1beta1/inferenceservice/utils/utils.go `UpdateImageTag`, on kserve-container
  only (predictor.go `buildPodSpec`, after the placeholders): `runtimeVersion` replaces the tag
  (or adds one); an image with `@sha256:` is left alone only from v0.16.0; without
  `runtimeVersion` a GPU request (nvidia/amd/intel/habana) appends `-gpu` to a tagged image whose
  server type is tensorflow-serving, torchserve or huggingfaceserver: by runtime name up to
  v0.19, by annotation first from v0.20.0 (`52c405476` #4769, which also inserts `-cpu` before
  the tag of a vllmserver image without GPUs).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from .versions import at_least

SERVER_TYPE_ANNOTATION = "serving.kserve.io/server-type"
_BY_NAME = {"kserve-mlserver": "mlserver", "kserve-torchserve": "torchserve", "kserve-tritonserver": "tritonserver",
            "kserve-tensorflow-serving": "tensorflow-serving", "kserve-huggingfaceserver": "huggingfaceserver",
            "kserve-vllmserver": "vllmserver"}
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "intel.com/gpu", "habana.ai/gaudi")
_GPU_SUFFIXED = {"tensorflow-serving", "torchserve", "huggingfaceserver"}
_TAG = re.compile(r"(:([\w.\-_]*))$")


def server_type(runtime_name: str | None, runtime_annotations: dict[str, str] | None, kserve_version: str,
                annotation_from: str = "0.17") -> str:
    annotations = runtime_annotations or {}
    if at_least(kserve_version, annotation_from) and SERVER_TYPE_ANNOTATION in annotations:
        return annotations[SERVER_TYPE_ANNOTATION]
    return _BY_NAME.get(runtime_name or "", "")


def set_runtime_defaults(isvc: dict[str, Any], runtime: dict[str, Any], kserve_version: str) -> dict[str, Any]:
    """The InferenceService after `SetRuntimeDefaults` (a copy)."""
    out = copy.deepcopy(isvc)
    model = out["spec"]["predictor"].setdefault("model", {})
    kind = server_type(runtime["metadata"]["name"], runtime["metadata"].get("annotations"), kserve_version)
    if kind in ("tritonserver", "mlserver") and model.get("protocolVersion") is None:
        model["protocolVersion"] = "v2"
    if kind == "tritonserver" and not model.get("storageUri") and not model.get("storage"):
        model["args"] = list(model.get("args") or []) + ["--model-control-mode=explicit"]
    return out


def gpu_requested(container: dict[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any(k in GPU_RESOURCES for part in ("limits", "requests") for k in (resources.get(part) or {}))


def update_image_tag(container: dict[str, Any], runtime_version: str | None, runtime_name: str | None,
                     runtime_annotations: dict[str, str] | None, kserve_version: str) -> None:
    image = container.get("image") or ""
    if "@sha256:" in image and at_least(kserve_version, "0.16"):
        return
    if runtime_version is not None:
        container["image"] = _TAG.sub(":" + runtime_version, image) if _TAG.search(image) \
            else f"{image}:{runtime_version}"
        return
    kind = server_type(runtime_name, runtime_annotations, kserve_version, annotation_from="0.20")
    tag = _TAG.search(image)
    if not kind or not tag:
        return
    if gpu_requested(container):
        if kind in _GPU_SUFFIXED and not image.endswith("-gpu"):
            container["image"] = image + "-gpu"
    elif kind == "vllmserver" and at_least(kserve_version, "0.20"):
        bare = image[: tag.start()]
        if not bare.endswith("-cpu"):
            container["image"] = bare + "-cpu" + tag.group(0)
