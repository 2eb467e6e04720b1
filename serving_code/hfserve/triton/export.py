"""Copy a checkpoint's tokenizer and config files for the transformer container.

An allowlist (security review L6): the files tokenizers, transformers' configs and the sentence-transformers module
configs are read from, never weights or anything else a model repository happens to hold; symlinks are skipped (a
link could point anywhere on the Triton container's filesystem, and the export is what the transformer can read),
and the total is capped below the tokenizer emptyDir's size limit (going over it evicts the pod).
`config.json` is written last, through a temporary name, so a reader that waits for it sees a complete folder.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger("hfserve.triton")

# Top-level names (fnmatch patterns) and, in sentence-transformers module folders (1_Pooling, 2_Dense, ...), their
# config.json only.
TOP_LEVEL = ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer*.json", "vocab.*", "merges.txt",
             "*.model", "*.spm", "special_tokens_map.json", "added_tokens.json", "sentence_bert_config.json",
             "config_sentence_transformers.json", "modules.json", "chat_template.*", "generation_config.json")
MODULE_FILES = ("config.json",)
MAX_EXPORT_BYTES = 200 * 1024 * 1024  # the chart's tokenizer emptyDir is 256Mi
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".gguf", ".tflite",
                   ".ot")


class ExportTooLarge(ValueError):
    pass


def is_weight_file(path: Path) -> bool:
    return path.name.endswith(WEIGHT_SUFFIXES)


def wanted(rel: Path) -> bool:
    parts = rel.parts
    if len(parts) == 1:
        return any(fnmatch.fnmatchcase(parts[0], pattern) for pattern in TOP_LEVEL) and not is_weight_file(rel)
    # one level down, a sentence-transformers module folder such as 1_Pooling
    return len(parts) == 2 and parts[0].split("_", 1)[0].isdigit() and parts[1] in MODULE_FILES


def export_tokenizer_files(model_dir: Path, export_dir: Path, max_bytes: int = MAX_EXPORT_BYTES) -> list[Path]:
    model_dir, export_dir = Path(model_dir), Path(export_dir)
    chosen: list[Path] = []
    total = 0
    for root, dirs, files in os.walk(model_dir):  # os.walk does not descend into symlinked folders
        dirs[:] = sorted(d for d in dirs if d.split("_", 1)[0].isdigit() and Path(root) == model_dir)
        for name in sorted(files):
            src = Path(root) / name
            rel = src.relative_to(model_dir)
            if not wanted(rel):
                continue
            if src.is_symlink() or not src.is_file():
                log.warning("not exporting %s: a symlink or not a regular file", rel)
                continue
            total += src.stat().st_size
            chosen.append(rel)
    if total > max_bytes:
        raise ExportTooLarge(f"the tokenizer and config files of {model_dir} take {total} bytes, over the export's "
                             f"{max_bytes}")
    export_dir.mkdir(parents=True, exist_ok=True)
    config = None
    copied: list[Path] = []
    for rel in chosen:
        if rel == Path("config.json"):
            config = model_dir / rel
            continue
        dest = export_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / rel, dest, follow_symlinks=False)
        copied.append(rel)
    if config is not None:
        tmp = export_dir / ".config.json.tmp"
        shutil.copyfile(config, tmp, follow_symlinks=False)
        os.replace(tmp, export_dir / "config.json")
        copied.append(Path("config.json"))
    return copied
