"""Model repository, tokenizer export and wire format: no Triton needed (fast)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hfserve.config import parse_batch_sizes
from hfserve.tasks import Task
from hfserve.transformer import wire
from hfserve.triton.export import export_tokenizer_files
from hfserve.triton.repository import GenerativeTaskRefused, build_repository, render_config

from devkit.triton_stats import BatchStats


def test_minilm_config_pbtxt(minilm_dir, tmp_path):
    spec = build_repository(minilm_dir, tmp_path, "minilm", max_batch_size=16, preferred_batch_sizes=[4, 8, 64],
                            max_queue_delay_us=1500, instance_count=2, device="cpu")
    config = (tmp_path / "minilm" / "config.pbtxt").read_text()
    assert spec.task == Task.TEXT_EMBEDDING
    assert spec.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert 'name: "minilm"' in config and 'backend: "python"' in config
    assert "max_batch_size: 16" in config
    assert "preferred_batch_size: [ 4, 8 ]" in config  # 64 > max_batch_size is dropped
    assert "max_queue_delay_microseconds: 1500" in config
    assert config.count("data_type: TYPE_INT64") == 3 and config.count("dims: [ -1 ]") == 3
    assert config.count("allow_ragged_batch: true") == 3
    assert 'name: "embeddings"\n    data_type: TYPE_FP32\n    dims: [ 384 ]' in config
    assert "count: 2\n    kind: KIND_CPU" in config
    assert f'string_value: "{minilm_dir.resolve()}"' in config
    assert 'string_value: "text_embedding"' in config
    model_py = (tmp_path / "minilm" / "1" / "model.py").read_text()
    assert "class TritonPythonModel" in model_py and "EncoderEngine" in model_py


def test_pass_token_bound_and_source_tree_reach_model_py(minilm_dir, tmp_path):
    import hfserve

    build_repository(minilm_dir, tmp_path, "minilm", device="cpu", max_batch_tokens=512)
    config = (tmp_path / "minilm" / "config.pbtxt").read_text()
    assert 'key: "max_batch_tokens"\n  value: { string_value: "512" }' in config
    # The stub ignores PYTHONPATH: model.py imports hfserve from the tree that built the repository.
    assert f'string_value: "{Path(hfserve.__file__).resolve().parents[1]}"' in config
    build_repository(minilm_dir, tmp_path, "minilm", device="cpu")
    assert 'key: "max_batch_tokens"\n  value: { string_value: "" }' in (tmp_path / "minilm" / "config.pbtxt").read_text()
    with pytest.raises(ValueError, match="max_batch_tokens"):
        build_repository(minilm_dir, tmp_path, "minilm", device="cpu", max_batch_tokens=0)


@pytest.mark.parametrize("kind, output", [
    ("sequence_classification", 'name: "logits"\n    data_type: TYPE_FP32\n    dims: [ 2 ]'),
    ("token_classification", 'name: "logits"\n    data_type: TYPE_FP32\n    dims: [ -1, 5 ]'),
    ("fill_mask", 'name: "mask_scores"\n    data_type: TYPE_FP32\n    dims: [ -1, 100 ]'),  # top-k, not vocab
])
def test_task_outputs(tiny_models, tmp_path, kind, output):
    build_repository(tiny_models(kind), tmp_path, "m", device="cpu")
    config = (tmp_path / "m" / "config.pbtxt").read_text()
    assert output in config
    assert f'string_value: "{kind}"' in config


def test_no_token_type_ids_when_the_model_does_not_take_them(tmp_path):
    spec_inputs = ("input_ids", "attention_mask")
    from hfserve.triton.repository import RepositorySpec

    config = render_config(RepositorySpec(model_name="d", model_dir=tmp_path, task=Task.TEXT_EMBEDDING,
                                          input_names=spec_inputs, output_specs={"embeddings": ("FP32", [8])}))
    assert 'name: "token_type_ids"' not in config and config.count("TYPE_INT64") == 2


def test_generative_checkpoints_are_refused(tiny_models, tmp_path):
    with pytest.raises(GenerativeTaskRefused, match="kserve-huggingface runtime"):
        build_repository(tiny_models("text_generation"), tmp_path, "gpt")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hfserve.triton", "--model_name", "gpt", "--model_dir",
                             str(tiny_models("text_generation")), "--repository_dir", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "text_generation" in result.stderr and "kserve-huggingface runtime" in result.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "r").exists()


def test_bad_arguments(minilm_dir, tmp_path):
    with pytest.raises(ValueError, match="valid Triton model name"):
        build_repository(minilm_dir, tmp_path, "a/b")
    with pytest.raises(ValueError, match="max_batch_size"):
        build_repository(minilm_dir, tmp_path, "m", max_batch_size=0)
    assert parse_batch_sizes("8,16, 32") == (8, 16, 32)


def test_tokenizer_export_skips_weights(minilm_dir, tmp_path):
    copied = {str(p) for p in export_tokenizer_files(minilm_dir, tmp_path / "export")}
    assert {"config.json", "tokenizer.json", "vocab.txt", "modules.json", "1_Pooling/config.json"} <= copied
    assert not any(name.endswith((".safetensors", ".bin")) for name in copied)
    assert json.loads((tmp_path / "export" / "config.json").read_text())["hidden_size"] == 384


def test_wire_format_matches_tritons_protos():
    # tritonclient's generated messages are the reference (read and written in a process of their own).
    ids = np.arange(12, dtype=np.int64).reshape(3, 4) - 2
    request = wire.encode_infer_request("m", {"input_ids": ids, "attention_mask": ids * 0 + 1}, ["embeddings"])
    result = subprocess.run([sys.executable, str(Path(__file__).parent.parent / "grpc_tool.py"), "reference", request.hex()],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    ref = json.loads(result.stdout)
    assert ref["request"] == {
        "model_name": "m",
        "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [3, 4]},
                   {"name": "attention_mask", "datatype": "INT64", "shape": [3, 4]}],
        "outputs": ["embeddings"],
        "raw": [ids.ravel().tolist(), [1] * 12]}
    decoded = wire.decode_infer_response(bytes.fromhex(ref["infer_response"]))
    assert np.array_equal(decoded["logits"], np.array(ref["values"], dtype=np.float32))
    assert wire.decode_model_config_response(bytes.fromhex(ref["config_response"])) == {
        "max_batch_size": 32, "inputs": ["input_ids", "attention_mask"], "outputs": ["logits"]}
    assert wire.decode_ready_response(bytes.fromhex(ref["ready_true"])) is True
    assert wire.decode_ready_response(bytes.fromhex(ref["ready_false"])) is False
    assert wire.encode_name_request("x") == bytes.fromhex(ref["name_request"])


def test_batch_stats():
    before = BatchStats.from_json({"model_stats": [{"inference_count": 10, "execution_count": 5,
                                                    "inference_stats": {"success": {"count": 10}}}]})
    after = BatchStats(74, 9, 42)
    delta = after - before
    assert delta.average_batch_rows == 16.0 and delta.average_batch_requests == 8.0
