"""The ONNX Runtime engine (--engine onnx, --quantize int8) against the torch engine, on real checkpoints:
the four tiny encoder tasks and the packaged all-MiniLM-L6-v2. Exports go to the session's cache folder (onnx_cache,
tests/conftest.py), which test_onnx_server and test_triton_onnx reuse."""

import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from hfserve.engine.encoder import EncoderEngine
from hfserve.engine.loading import load_encoder_engine
from hfserve.engine.onnx_engine import OnnxEncoderEngine, select_providers
from hfserve.engine.onnx_export import prepare_onnx_model, shipped_onnx
from hfserve.tasks import Task
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer

from loadtests.corpus import QUERIES, SENTENCES, paragraph

KINDS = ("text_embedding", "sequence_classification", "token_classification", "fill_mask")
CPU = ["CPUExecutionProvider"]


def fixed_corpus() -> list[str]:
    import random

    rng = random.Random(12)
    return QUERIES + SENTENCES + [paragraph(rng, n) for n in (3, 5, 8)]


def encode(model_dir: Path, input_names, texts: list[str], max_length: int = 256) -> dict[str, np.ndarray]:
    options = TokenizerOptions()
    encoder = TextEncoder(load_tokenizer(model_dir, options), max_length, options, input_names)
    return encoder.pad(encoder.encode(texts))


def assert_same_outputs(torch_engine, onnx_engine, inputs, atol=1e-4):
    expected, actual = torch_engine.forward(inputs), onnx_engine.forward(inputs)
    assert set(actual) == set(expected)
    for name in expected:
        assert actual[name].dtype == np.float32 and actual[name].shape == expected[name].shape
        np.testing.assert_allclose(actual[name], expected[name], atol=atol, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_parity_with_torch_on_every_encoder_task(tiny_models, onnx_cache, kind):
    model_dir = tiny_models(kind)
    torch_engine = EncoderEngine.load(model_dir, dtype="float32", device="cpu")
    onnx_engine = load_encoder_engine(model_dir, engine="onnx", device="cpu", onnx_cache_dir=onnx_cache)
    assert isinstance(onnx_engine, OnnxEncoderEngine) and onnx_engine.providers == CPU
    assert onnx_engine.input_names == torch_engine.input_names
    assert onnx_engine.output_specs == torch_engine.output_specs
    texts = ["Alice moved from Paris to Berlin last year.", "x", "the movie was great and the food was bad"]
    inputs = encode(model_dir, onnx_engine.input_names, texts, max_length=64)
    assert inputs["attention_mask"].min() == 0  # padded rows: the masking path is compared too
    assert_same_outputs(torch_engine, onnx_engine, inputs)
    # Other batch and sequence sizes than the export's example (dynamic axes).
    assert_same_outputs(torch_engine, onnx_engine, encode(model_dir, onnx_engine.input_names, ["a"], 64))


def test_minilm_parity_and_int8_quality(minilm_dir, onnx_cache):
    texts = fixed_corpus()
    torch_engine = EncoderEngine.load(minilm_dir, dtype="float32", device="cpu")
    fp32 = load_encoder_engine(minilm_dir, engine="onnx", device="cpu", onnx_cache_dir=onnx_cache)
    inputs = encode(minilm_dir, fp32.input_names, texts)
    assert inputs["input_ids"].shape[1] > 60  # the paragraphs make it a long, padded batch
    assert_same_outputs(torch_engine, fp32, inputs)
    int8 = load_encoder_engine(minilm_dir, engine="onnx", device="cpu", quantize="int8", onnx_cache_dir=onnx_cache)
    assert int8.path.name == "model.int8.onnx"
    assert quantized_matmuls(int8.path) >= 6 * 5  # per layer: query, key, value, attention output, FFN up
    a, b = fp32.forward(inputs)["embeddings"], int8.forward(inputs)["embeddings"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99, f"int8 cosine to float32: min {cosine.min():.4f}"
    assert np.abs(a - b).max() > 1e-4  # it did quantize: the graphs are not the same


@pytest.mark.parametrize("kind", ["sequence_classification", "token_classification"])
def test_int8_keeps_classification_labels(tiny_models, onnx_cache, kind):
    model_dir = tiny_models(kind)
    fp32 = load_encoder_engine(model_dir, engine="onnx", device="cpu", onnx_cache_dir=onnx_cache)
    int8 = load_encoder_engine(model_dir, engine="onnx", device="cpu", quantize="int8", onnx_cache_dir=onnx_cache)
    inputs = encode(model_dir, fp32.input_names, QUERIES + SENTENCES, max_length=64)
    labels_fp32 = fp32.forward(inputs)["logits"].argmax(-1)
    labels_int8 = int8.forward(inputs)["logits"].argmax(-1)
    mask = inputs["attention_mask"].astype(bool) if kind == "token_classification" else slice(None)
    np.testing.assert_array_equal(labels_int8[mask], labels_fp32[mask])


def test_export_is_cached_outside_a_read_only_model_dir(tiny_models, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_models("sequence_classification"), model_dir)
    before = sorted(p.name for p in model_dir.rglob("*"))
    make_read_only(model_dir)
    try:
        first = prepare_onnx_model(model_dir, Task.SEQUENCE_CLASSIFICATION, tmp_path / "cache")
        mtime = first.stat().st_mtime_ns
        second = prepare_onnx_model(model_dir, Task.SEQUENCE_CLASSIFICATION, tmp_path / "cache")
    finally:
        make_writable(model_dir)
    assert first == second and second.stat().st_mtime_ns == mtime  # reused, not exported again
    assert first.is_relative_to(tmp_path / "cache")
    assert sorted(p.name for p in model_dir.rglob("*")) == before
    assert not list((tmp_path / "cache").glob(".staging-*"))


def test_shipped_token_state_graph_gets_the_same_pooling(tiny_models, tmp_path, onnx_cache):
    """An Optimum-style onnx/model.onnx (outputs last_hidden_state) is used, with pooling appended to it."""
    model_dir = tmp_path / "shipped"
    shutil.copytree(tiny_models("text_embedding"), model_dir)
    export_token_states(model_dir, model_dir / "onnx" / "model.onnx")
    assert shipped_onnx(model_dir) == model_dir / "onnx" / "model.onnx"
    onnx_engine = load_encoder_engine(model_dir, engine="onnx", device="cpu", onnx_cache_dir=tmp_path / "cache")
    assert "-shipped-" in onnx_engine.path.parent.name
    torch_engine = EncoderEngine.load(model_dir, dtype="float32", device="cpu")
    texts = ["short", "a somewhat longer sentence about the weather in London today"]
    assert_same_outputs(torch_engine, onnx_engine, encode(model_dir, onnx_engine.input_names, texts, 64))


def test_provider_choice():
    assert select_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == CPU
    assert select_providers("auto", CPU) == CPU
    gpu = select_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], device_id=1)
    assert gpu == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    both = select_providers("cuda", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert [p[0] for p in both[:2]] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        select_providers("cuda", CPU)
    with pytest.raises(ValueError, match="CPU option"):
        select_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], quantize="int8")
    with pytest.raises(ValueError, match="float32 graph"):
        select_providers("cpu", CPU, dtype="float16")


def test_wrong_combinations_are_refused(tiny_models):
    with pytest.raises(ValueError, match="needs --engine onnx"):
        load_encoder_engine(tiny_models("text_embedding"), engine="torch", quantize="int8")
    with pytest.raises(ValueError, match="unknown engine"):
        load_encoder_engine(tiny_models("text_embedding"), engine="tensorrt")


def export_token_states(model_dir: Path, out: Path) -> None:
    """What Optimum's feature-extraction export gives: the base model's token states, dynamic axes."""
    import warnings

    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()

    class TokenStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.full((2, 6), 5)
    mask = torch.ones_like(ids)
    mask[1, 3:] = 0
    names = ["input_ids", "attention_mask", "token_type_ids"]
    out.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TokenStates(), (ids, mask, torch.zeros_like(ids)), str(out), input_names=names,
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={n: {0: "b", 1: "t"} for n in [*names, "last_hidden_state"]})


def quantized_matmuls(path: Path) -> int:
    import onnx

    return sum(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in onnx.load(str(path)).graph.node)


def make_read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
