"""Pick the encoder engine for --engine: torch (EncoderEngine) or ONNX Runtime (OnnxEncoderEngine).

Both take the same token inputs and return the same named outputs, so callers (the in-process model, Triton's
Python backend) do not know which one runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import ExecutionConfig
from ..tasks import Task


def load_encoder_engine(model_dir: Path, task: Task | str | None = None, engine: str = "torch", dtype: str = "auto",
                        device: str = "auto", trust_remote_code: bool = False, quantize: str = "none",
                        onnx_cache_dir: Path | None = None, device_id: int = 0):
    ExecutionConfig(dtype=dtype, device=device, engine=engine, quantize=quantize,
                    onnx_cache_dir=onnx_cache_dir).validate()
    if engine == "onnx":
        from .onnx_engine import OnnxEncoderEngine

        return OnnxEncoderEngine.load(model_dir, task, dtype=dtype, device=device,
                                      trust_remote_code=trust_remote_code, quantize=quantize,
                                      cache_dir=onnx_cache_dir, device_id=device_id)
    from .encoder import EncoderEngine

    return EncoderEngine.load(model_dir, task, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


# Pickle checkpoints go through torch.load; its weights_only unpickler is itself an attack surface
# (CVE-2025-32434 in torch <= 2.5.1; security review L4). A folder that also has .safetensors is read from those:
# transformers and the sentence-transformers modules (engine/encoder.py) prefer them.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt")
SKIPPED_DIRS = frozenset({".git", ".cache", "onnx", "openvino", "__pycache__"})


class PickleWeightsRefused(ValueError):
    def __init__(self, path: Path):
        super().__init__(f"{path} holds pickle weights and its folder has no .safetensors: refused, as loading "
                         "pickle runs an unpickler over the file. Convert the checkpoint to safetensors "
                         "(save_pretrained(..., safe_serialization=True)), or pass --allow_pickle_weights if the "
                         "model directory is trusted")
        self.path = path


def is_pickle_weights(name: str) -> bool:
    return (name.startswith("pytorch_model") and name.endswith((".bin", ".bin.index.json"))) \
        or name.endswith(PICKLE_SUFFIXES)


def check_weights(model_dir: Path | str, allow_pickle_weights: bool = False) -> None:
    """Refuse a checkpoint whose weights (in any of its folders, sentence-transformers modules included) exist only
    as pickle, unless allowed. Torch-free: the launcher calls it before any loader runs."""
    if allow_pickle_weights:
        return
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        if any(name.endswith(".safetensors") for name in files):
            continue
        pickled = sorted(name for name in files if is_pickle_weights(name))
        if pickled:
            raise PickleWeightsRefused(Path(root) / pickled[0])
