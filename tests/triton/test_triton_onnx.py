"""--engine onnx in the Triton runtime.

- Fallback, for real: the nvidia-pytriton wheel's Triton has no onnxruntime backend, so the launcher emits the
  Python backend running ONNX Runtime; every tiny encoder task is compared with the torch engine.
- Native: Triton's onnxruntime backend is not installed here, so its emission is checked by the generated
  config.pbtxt and files (the same graph the fallback runs), and the launcher's choice by a fake backends folder.
"""

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hfserve.engine.encoder import EncoderEngine
from hfserve.triton.__main__ import resolve_onnx_backend
from hfserve.triton.local_server import find_triton
from hfserve.triton.repository import build_repository, native_onnx_backend_available

from .test_triton_tasks import infer_all, rows

KINDS = ("text_embedding", "sequence_classification", "token_classification", "fill_mask")


def test_native_onnxruntime_emission(tiny_models, tmp_path, onnx_cache):
    spec = build_repository(tiny_models("token_classification"), tmp_path / "repo", "ner", device="cpu",
                            engine="onnx", onnx_backend="native", onnx_cache_dir=onnx_cache,
                            max_batch_size=16)
    folder = tmp_path / "repo" / "ner"
    config = (folder / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config and 'default_model_filename: "model.onnx"' in config
    assert "allow_ragged_batch" not in config  # the onnxruntime backend batches only requests of one shape
    assert config.count("data_type: TYPE_INT64") == 3 and "max_batch_size: 16" in config
    assert 'name: "logits"\n    data_type: TYPE_FP32\n    dims: [ -1, 5 ]' in config
    assert "kind: KIND_CPU" in config and "parameters" not in config  # nothing for a Python model to read
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx"]
    assert (folder / "1" / "model.onnx").read_bytes() == Path(spec.onnx_file).read_bytes()
    assert spec.onnx_file.is_relative_to(onnx_cache)


def test_python_fallback_config_names_the_engine(tiny_models, tmp_path):
    onnx_cache = tmp_path / "cache"  # its own: the builder itself must prepare the int8 graph
    build_repository(tiny_models("text_embedding"), tmp_path / "repo", "emb", device="cpu", engine="onnx",
                     quantize="int8", onnx_cache_dir=onnx_cache)
    config = (tmp_path / "repo" / "emb" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and config.count("allow_ragged_batch: true") == 3
    for key, value in (("engine", "onnx"), ("quantize", "int8"), ("onnx_cache_dir", str(onnx_cache))):
        assert f'key: "{key}"\n  value: {{ string_value: "{value}" }}' in config
    assert (tmp_path / "repo" / "emb" / "1" / "model.py").is_file()
    assert list(onnx_cache.glob("*/model.int8.onnx"))  # prepared by the builder, reused by model.py


def test_launcher_picks_native_only_where_the_backend_exists(tmp_path):
    wheel = find_triton()
    assert not native_onnx_backend_available(wheel.backend_dir, wheel.binary)
    assert resolve_onnx_backend("auto", wheel) == "python"
    nvidia = tmp_path / "opt" / "tritonserver"  # NVIDIA's image: bin/tritonserver beside backends/onnxruntime
    (nvidia / "bin").mkdir(parents=True)
    (nvidia / "backends" / "onnxruntime").mkdir(parents=True)
    (nvidia / "bin" / "tritonserver").write_text("")
    image = SimpleNamespace(binary=nvidia / "bin" / "tritonserver", backend_dir=None)
    assert resolve_onnx_backend("auto", image) == "native"
    assert resolve_onnx_backend("python", image) == "python"


def test_refused_combinations(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="needs --engine onnx"):
        build_repository(tiny_models("text_embedding"), tmp_path, "m", device="cpu", quantize="int8")


@pytest.fixture(scope="module")
def onnx_triton(launch_triton, tiny_models, onnx_cache):
    """The launcher (auto backend choice) serving each tiny task with --engine onnx on the wheel's Triton."""
    cache = onnx_cache
    launched = {kind: launch_triton(tiny_models(kind), kind, "--engine", "onnx", "--onnx_cache_dir", str(cache),
                                    "--device", "cpu", "--max_queue_delay_us", "100000",
                                    "--preferred_batch_sizes", "8", start=False)
                for kind in ("text_embedding", "token_classification")}
    for triton in launched.values():
        triton.start(timeout=300)  # the launcher exports the graph before Triton starts: slow on a busy machine
    return launched


@pytest.mark.parametrize("kind", ("text_embedding", "token_classification"))
def test_python_backend_fallback_matches_the_torch_engine(onnx_triton, tiny_models, kind):
    triton = onnx_triton[kind]
    config = (triton.workdir / "repository" / kind / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and 'string_value: "onnx"' in config
    engine = EncoderEngine.load(tiny_models(kind), dtype="float32", device="cpu")
    rng = np.random.default_rng(11)
    requests = [rows(rng, engine.config.vocab_size, lengths) for lengths in ([3], [9, 4], [12, 12, 2], [6])]
    results = asyncio.run(infer_all(triton.grpc_target, kind, requests))
    for request, result in zip(requests, results):
        assert not isinstance(result, BaseException), result
        expected = engine.forward(request)
        for name in expected:
            assert result[name].shape == expected[name].shape
            np.testing.assert_allclose(result[name], expected[name], atol=1e-4, rtol=0)
