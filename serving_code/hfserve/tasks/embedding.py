"""text_embedding: how the checkpoint pools token states, and the per-text result."""

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

POOLING_MODES = ("mean", "cls", "max", "lasttoken", "mean_sqrt_len")


@dataclass(frozen=True)
class PoolingConfig:
    mode: str = "mean"
    normalize: bool = False


def read_pooling_config(model_dir: Path) -> PoolingConfig:
    """Pooling as a sentence-transformers checkpoint declares it (modules.json); mean pooling otherwise."""
    modules_path = Path(model_dir) / "modules.json"
    if not modules_path.is_file():
        return PoolingConfig()
    modules = json.loads(modules_path.read_text())
    normalize = any(m.get("type", "").endswith(".Normalize") for m in modules)
    mode = "mean"
    for module in modules:
        if module.get("type", "").endswith(".Pooling"):
            mode = _pooling_mode(Path(model_dir) / module.get("path", "1_Pooling") / "config.json")
    return PoolingConfig(mode=mode, normalize=normalize)


def _pooling_mode(config_path: Path) -> str:
    if not config_path.is_file():
        return "mean"
    config = json.loads(config_path.read_text())
    if isinstance(config.get("pooling_mode"), str) and config["pooling_mode"] in POOLING_MODES:
        return config["pooling_mode"]
    for mode in ("cls_token", "lasttoken", "max_tokens", "mean_sqrt_len_tokens", "mean_tokens"):
        if config.get(f"pooling_mode_{mode}"):
            return {"cls_token": "cls", "max_tokens": "max", "mean_sqrt_len_tokens": "mean_sqrt_len",
                    "mean_tokens": "mean"}.get(mode, mode)
    return "mean"


def finish_embedding(vector: np.ndarray, normalize: bool) -> np.ndarray:
    vector = vector.astype(np.float32, copy=False)
    if normalize:
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            vector = vector / norm
    return vector


def embedding_to_base64(vector: np.ndarray) -> str:
    """OpenAI's base64 encoding_format: little-endian float32 bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
