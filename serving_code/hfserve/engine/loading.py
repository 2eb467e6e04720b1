"""Pick the encoder engine for --engine: torch (EncoderEngine) or ONNX Runtime (OnnxEncoderEngine).

Both take the same token inputs and return the same named outputs, so callers (the in-process model, Triton's
Python backend) do not know which one runs.
"""

from __future__ import annotations

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
