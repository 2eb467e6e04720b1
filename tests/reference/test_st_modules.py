"""Every module chain sentence-transformers writes for dense embedders, built here by sentence-transformers itself,
gives exactly `SentenceTransformer.encode`'s vectors through both engines (torch, and the exported ONNX graph
with the head inside); a chain with a module the server cannot run stops it at start with the module's name.

Runtime 2 runs the same EncoderEngine inside Triton's Python backend, and its repository's output width comes from
the same module chain (checked here); tests/reference/test_embeddings.py serves checkpoints through both runtimes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hfserve.engine.encoder import EncoderEngine
from hfserve.engine.onnx_engine import OnnxEncoderEngine
from hfserve.tasks.embedding import UnsupportedModule, finish_embedding, read_embedding_modules
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, effective_max_length, load_tokenizer
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import modules as st

from devkit.tiny_models import SENTENCES, build_tiny_model

TEXTS = ["Paris is the capital of France.", "the cat sat on the mat", "x", " ".join(SENTENCES)]


def _chain(pooling, *head, normalize=False):
    def build(transformer):
        dim = transformer.get_embedding_dimension()
        layers, width = [], dim * (1 if isinstance(pooling, str) else len(pooling))
        for make in head:
            layer = make(width)
            layers.append(layer)
            width = layer.get_embedding_dimension() if hasattr(layer, "get_embedding_dimension") else width
        return [transformer, st.Pooling(dim, pooling_mode=pooling), *layers, *([st.Normalize()] if normalize else [])]
    return build


def dense(out, activation=torch.nn.Tanh, bias=True):
    return lambda width: st.Dense(width, out, bias=bias, activation_function=activation())


def layer_norm():
    return lambda width: st.LayerNorm(width)


# name -> module chain after the Transformer, as a sentence-transformers user would save it
ZOO = {
    "dense_tanh": _chain("mean", dense(16), normalize=True),
    "two_dense_identity_no_bias": _chain("cls", dense(24, torch.nn.Identity, bias=False), dense(8)),
    "dense_gelu_layernorm": _chain("max", dense(16, torch.nn.GELU), layer_norm(), normalize=True),
    "weightedmean": _chain("weightedmean"),
    "lasttoken": _chain("lasttoken", normalize=True),
    "mean_sqrt_len": _chain("mean_sqrt_len_tokens"),
    "concatenated_pooling_dense": _chain(("cls", "mean", "max"), dense(16, torch.nn.ReLU)),
    "layernorm_only": _chain("mean", layer_norm()),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("st-zoo")
    base = build_tiny_model("text_embedding", root / "base")
    dirs = {}
    torch.manual_seed(0)
    for name, chain in ZOO.items():
        transformer = st.Transformer(str(base), max_seq_length=48)
        model = SentenceTransformer(modules=chain(transformer), device="cpu")
        model.save(str(root / name))
        dirs[name] = root / name
    dirs["legacy_boolean_pooling"] = _legacy_copy(dirs["weightedmean"], root / "legacy_boolean_pooling")
    no_modules = root / "no_modules_json"
    shutil.copytree(base, no_modules)
    dirs["no_modules_json"] = no_modules
    dirs["decoder_lasttoken"] = _decoder_embedder(root)
    return dirs


def _decoder_embedder(root: Path) -> Path:
    """A decoder embedder as sentence-transformers saves one (Qwen3-Embedding's shape, on the tiny GPT-2): last-token
    pooling, Normalize, a left-padding tokenizer whose pad is its eos, and config.json still naming the *LMHead*
    architecture. Detected as text_embedding with no --task."""
    base = build_tiny_model("text_generation", root / "gpt2")
    # without its chat template: with one, sentence-transformers 6 embeds texts as chat messages (a "message"
    # modality), which this server does not do
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    transformer = st.Transformer(str(base), max_seq_length=48, processor_kwargs={"padding_side": "left"})
    transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    dim = transformer.get_embedding_dimension()
    model = SentenceTransformer(modules=[transformer, st.Pooling(dim, pooling_mode="lasttoken"), st.Normalize()],
                                device="cpu")
    out = root / "decoder_lasttoken"
    model.save(str(out))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "architectures": ["GPT2LMHeadModel"]}))
    return out


def _legacy_copy(src: Path, out: Path) -> Path:
    """The same checkpoint as sentence-transformers 2.x wrote it: `sentence_transformers.models.X` module types and
    one boolean per pooling mode (cls and mean, concatenated)."""
    shutil.copytree(src, out)
    modules = json.loads((out / "modules.json").read_text())
    for module in modules:
        module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[-1]
    (out / "modules.json").write_text(json.dumps(modules))
    config = json.loads((out / "1_Pooling" / "config.json").read_text())
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": config["embedding_dimension"], "pooling_mode_cls_token": True,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    return out


def encode_with(engine, model_dir: Path, texts: list[str]) -> np.ndarray:
    options = TokenizerOptions()
    tokenizer = load_tokenizer(model_dir, options)
    encoder = TextEncoder(tokenizer, effective_max_length(tokenizer, model_dir, None), options, engine.input_names)
    outputs = engine.forward(encoder.pad(encoder.encode(texts)))["embeddings"]
    normalize = read_embedding_modules(model_dir).normalize
    return np.stack([finish_embedding(row, normalize) for row in outputs])


@pytest.mark.parametrize("name", [*ZOO, "legacy_boolean_pooling", "no_modules_json", "decoder_lasttoken"])
def test_torch_engine_equals_sentence_transformers(zoo, name):
    # one text per call: a decoder's left padding shifts its positions, so batched encode() depends on the batch;
    # the server pads on the right, which a causal model's real tokens never see
    expected = SentenceTransformer(str(zoo[name]), device="cpu").encode(TEXTS, convert_to_numpy=True, batch_size=1)
    if name == "legacy_boolean_pooling":
        assert expected.shape[1] == 64  # cls and mean, concatenated
    engine = EncoderEngine.load(zoo[name], dtype="float32", device="cpu")
    assert engine.output_specs["embeddings"][1] == [expected.shape[1]]
    got = encode_with(engine, zoo[name], TEXTS)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["dense_tanh", "dense_gelu_layernorm", "concatenated_pooling_dense"])
def test_onnx_graph_holds_the_head(zoo, name, tmp_path):
    expected = SentenceTransformer(str(zoo[name]), device="cpu").encode(TEXTS, convert_to_numpy=True)
    engine = OnnxEncoderEngine.load(zoo[name], device="cpu", cache_dir=tmp_path)
    got = encode_with(engine, zoo[name], TEXTS)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_triton_repository_declares_the_head_width(zoo):
    from hfserve.tasks import Task
    from hfserve.triton.repository import describe_model

    _, outputs = describe_model(zoo["two_dense_identity_no_bias"], Task.TEXT_EMBEDDING)
    assert outputs == {"embeddings": ("FP32", [8])}


def _with_module(src: Path, out: Path, module: dict) -> Path:
    shutil.copytree(src, out)
    modules = json.loads((out / "modules.json").read_text())
    modules.insert(len(modules) - 1, {"idx": len(modules), "name": "x", **module})
    (out / "modules.json").write_text(json.dumps(modules))
    return out


@pytest.mark.parametrize("module,named", [
    ({"path": "2_WordWeights", "type": "sentence_transformers.models.WordWeights"}, "WordWeights"),
    ({"path": "2_CNN", "type": "sentence_transformers.sentence_transformer.modules.cnn.CNN"}, "CNN"),
])
def test_a_module_the_server_cannot_run_stops_it_at_start(zoo, tmp_path, module, named):
    model_dir = _with_module(zoo["dense_tanh"], tmp_path / "odd", module)
    with pytest.raises(UnsupportedModule, match=named):
        EncoderEngine.load(model_dir, dtype="float32", device="cpu")


def test_an_activation_outside_torch_nn_is_refused(zoo, tmp_path):
    model_dir = tmp_path / "odd_activation"
    shutil.copytree(zoo["dense_tanh"], model_dir)
    config_path = model_dir / "2_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "activation_function": "os.system"}))
    with pytest.raises(UnsupportedModule, match="os.system"):
        read_embedding_modules(model_dir)


def test_a_decoder_embedder_is_served_as_text_embedding_without_a_task(zoo):
    from hfserve.tasks import Task
    from hfserve.tasks.detect import infer_task
    from hfserve.triton.repository import describe_model

    assert infer_task(zoo["decoder_lasttoken"]) == Task.TEXT_EMBEDDING
    inputs, outputs = describe_model(zoo["decoder_lasttoken"], Task.TEXT_EMBEDDING)
    assert inputs == ("input_ids", "attention_mask")  # GPT-2's tokenizer makes no token_type_ids
    assert outputs == {"embeddings": ("FP32", [32])}


def test_a_checkpoint_sentence_transformers_embeds_as_chat_messages_is_refused(tmp_path):
    """With a chat template, sentence-transformers 6 saves a "message" modality and wraps every text in the
    template; the server does not, so it refuses to start rather than serve other vectors."""
    base = build_tiny_model("text_generation", tmp_path / "gpt2")  # its tokenizer has a chat template
    transformer = st.Transformer(str(base), max_seq_length=48)
    transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    model = SentenceTransformer(modules=[transformer, st.Pooling(transformer.get_embedding_dimension(),
                                                                 pooling_mode="lasttoken")], device="cpu")
    model.save(str(tmp_path / "chat"))
    assert "message" in json.loads((tmp_path / "chat" / "sentence_bert_config.json").read_text())["modality_config"]
    with pytest.raises(UnsupportedModule, match="chat messages"):
        EncoderEngine.load(tmp_path / "chat", dtype="float32", device="cpu")
