"""The tokenizer export for the transformer container copies an allowlist (security review L6): tokenizer, config
and sentence-transformers module files only, never weights or other repository files, never through a symlink, and
not more than its cap."""

import os
import shutil

import pytest
from hfserve.triton.export import ExportTooLarge, export_tokenizer_files


@pytest.fixture
def checkpoint(minilm_dir, tmp_path):
    model_dir = shutil.copytree(minilm_dir, tmp_path / "model")
    (model_dir / "model.onnx_data").write_bytes(b"\0" * 1024)
    (model_dir / "features.npy").write_bytes(b"\x93NUMPY")
    (model_dir / "head.joblib").write_bytes(b"\x80\x04")
    (model_dir / "onnx").mkdir()
    (model_dir / "onnx" / "model.onnx").write_bytes(b"graph")
    (model_dir / "notes").mkdir()
    (model_dir / "notes" / "config.json").write_text("{}")
    secret = tmp_path / "outside.txt"
    secret.write_text("private to the Triton container")
    os.symlink(secret, model_dir / "added_tokens.json")
    return model_dir


def test_only_the_allowlisted_regular_files_are_exported(checkpoint, tmp_path):
    copied = {p.as_posix() for p in export_tokenizer_files(checkpoint, tmp_path / "export")}
    assert copied == {"config.json", "config_sentence_transformers.json", "modules.json", "sentence_bert_config.json",
                      "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                      "1_Pooling/config.json"}
    exported = {p.relative_to(tmp_path / "export").as_posix() for p in (tmp_path / "export").rglob("*") if p.is_file()}
    assert exported == copied  # no weights, no .npy/.joblib/README, no onnx/ or notes/, not the symlinked file
    assert not any(p.is_symlink() for p in (tmp_path / "export").rglob("*"))


def test_an_export_over_its_cap_is_refused_before_anything_is_written(checkpoint, tmp_path):
    with pytest.raises(ExportTooLarge):
        export_tokenizer_files(checkpoint, tmp_path / "export", max_bytes=1000)
    assert not (tmp_path / "export").exists()
