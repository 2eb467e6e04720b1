"""Copy a checkpoint's tokenizer and config files (everything but the weights) for the transformer container.

`config.json` is written last, through a temporary name, so a reader that waits for it sees a complete folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".tflite",
                   ".ot", ".index.json")
SKIP_DIRS = {".git", ".cache", "onnx", "openvino", "__pycache__"}


def is_weight_file(path: Path) -> bool:
    name = path.name
    return name.endswith(WEIGHT_SUFFIXES) or name.startswith(("pytorch_model", "model.safetensors", "tf_model",
                                                              "flax_model", "rust_model"))


def export_tokenizer_files(model_dir: Path, export_dir: Path) -> list[Path]:
    model_dir, export_dir = Path(model_dir), Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    copied: list[Path] = []
    config = None
    for root, dirs, files in os.walk(model_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            src = Path(root) / name
            rel = src.relative_to(model_dir)
            if is_weight_file(src):
                continue
            if rel == Path("config.json"):
                config = src
                continue
            dest = export_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            copied.append(rel)
    if config is not None:
        tmp = export_dir / ".config.json.tmp"
        shutil.copyfile(config, tmp)
        os.replace(tmp, export_dir / "config.json")
        copied.append(Path("config.json"))
    return copied
