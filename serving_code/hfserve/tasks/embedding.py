"""text_embedding: how the checkpoint pools token states, and the per-text result."""

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# sentence-transformers' pooling modes, in the order it concatenates them when a checkpoint asks for several.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
_MODE_NAMES = {"mean_sqrt_len_tokens": "mean_sqrt_len", "cls_token": "cls", "max_tokens": "max",
               "mean_tokens": "mean", "weightedmean_tokens": "weightedmean"}
# Activations a Dense module may name (sentence-transformers stores a class path; nothing else is imported).
DENSE_ACTIVATIONS = ("Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU", "LeakyReLU", "ELU", "Softplus",
                     "Hardtanh", "Mish", "Softsign", "Tanhshrink")


class UnsupportedModule(ValueError):
    """A module of the checkpoint's modules.json that this server cannot run: it refuses to start rather than
    serve vectors that differ from sentence-transformers'."""


@dataclass(frozen=True)
class DenseLayer:
    path: Path  # the module folder: config.json and its weights (linear.weight, linear.bias)
    in_features: int
    out_features: int
    bias: bool
    activation: str  # one of DENSE_ACTIVATIONS


@dataclass(frozen=True)
class LayerNormLayer:
    path: Path  # weights norm.weight, norm.bias
    dimension: int


@dataclass(frozen=True)
class EmbeddingModules:
    """What sentence-transformers runs after the transformer, in modules.json's order: pooling (several modes are
    concatenated), then Dense and LayerNorm layers, then optionally Normalize (always last)."""

    pooling: tuple[str, ...] = ("mean",)
    head: tuple[DenseLayer | LayerNormLayer, ...] = ()
    normalize: bool = False

    @property
    def mode(self) -> str:
        return "+".join(self.pooling)

    def dimension(self, hidden_size: int) -> int:
        if self.head:
            last = self.head[-1]
            return last.out_features if isinstance(last, DenseLayer) else last.dimension
        return hidden_size * len(self.pooling)


# Kept for callers that need only these two facts.
PoolingConfig = EmbeddingModules


def read_embedding_modules(model_dir: Path) -> EmbeddingModules:
    """The checkpoint's module chain (modules.json, both the 2.x-4.x `sentence_transformers.models.X` and the 5.x+
    `sentence_transformers.*.modules.*.X` spellings); mean pooling for a plain transformers checkpoint."""
    model_dir = Path(model_dir)
    modules_path = model_dir / "modules.json"
    if not modules_path.is_file():
        return EmbeddingModules()
    modules = json.loads(modules_path.read_text())
    pooling: tuple[str, ...] | None = None
    head: list[DenseLayer | LayerNormLayer] = []
    normalize = False
    for index, module in enumerate(modules):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        folder = model_dir / module.get("path", "")
        where = f"{modules_path}: module {index} ({module.get('type')!r}, path {module.get('path', '')!r})"
        if normalize:
            raise UnsupportedModule(f"{where} comes after Normalize; this server supports Normalize only last")
        if kind == "Transformer":
            if index != 0 or module.get("path", "") not in ("", "."):
                raise UnsupportedModule(f"{where}: the Transformer must be the first module, at the top folder")
            if _embeds_chat_messages(model_dir):
                raise UnsupportedModule(f"{where}: sentence-transformers embeds this checkpoint's texts as chat "
                                        "messages (a 'message' modality and a chat template); this server "
                                        "embeds the text itself, so its vectors would differ")
        elif kind == "Pooling":
            if pooling is not None or head:
                raise UnsupportedModule(f"{where}: one Pooling, directly after the Transformer, is supported")
            pooling = _pooling_modes(folder / "config.json", where)
        elif kind == "Dense":
            if pooling is None:
                raise UnsupportedModule(f"{where}: a Dense before Pooling (on token embeddings) is not supported")
            head.append(_dense_layer(folder, where))
        elif kind == "LayerNorm":
            if pooling is None:
                raise UnsupportedModule(f"{where}: a LayerNorm before Pooling is not supported")
            config = _module_config(folder / "config.json", where)
            head.append(LayerNormLayer(folder, int(config["dimension"])))
        elif kind == "Dropout":
            continue  # identity at inference
        elif kind == "Normalize":
            normalize = True
        else:
            raise UnsupportedModule(f"{where}: this server cannot run a {kind} module; supported: Transformer, "
                                    "Pooling, Dense, LayerNorm, Dropout, Normalize")
    return EmbeddingModules(pooling=pooling or ("mean",), head=tuple(head), normalize=normalize)


def _embeds_chat_messages(model_dir: Path) -> bool:
    """sentence-transformers 6 wraps each text in the tokenizer's chat template when the Transformer module lists
    a "message" modality and there is a template."""
    config_path = model_dir / "sentence_bert_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    if "message" not in (config.get("modality_config") or {}):
        return False
    tokenizer_config = model_dir / "tokenizer_config.json"
    has_template = (model_dir / "chat_template.jinja").is_file() or (
        tokenizer_config.is_file() and "chat_template" in json.loads(tokenizer_config.read_text()))
    return has_template


def read_pooling_config(model_dir: Path) -> EmbeddingModules:
    return read_embedding_modules(model_dir)


def _module_config(path: Path, where: str) -> dict:
    if not path.is_file():
        raise UnsupportedModule(f"{where}: {path} is missing")
    return json.loads(path.read_text())


def _pooling_modes(config_path: Path, where: str) -> tuple[str, ...]:
    config = _module_config(config_path, where) if config_path.is_file() else {}
    if config.get("include_prompt") is False:
        raise UnsupportedModule(f"{where}: include_prompt=false (prompt tokens left out of pooling) is not supported")
    raw = config.get("pooling_mode")
    if raw is not None:
        names = [raw] if isinstance(raw, str) else list(raw)
    else:  # sentence-transformers before 5.x: one boolean per mode
        names = [mode for mode in ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens",
                                   "weightedmean_tokens", "lasttoken") if config.get(f"pooling_mode_{mode}")]
    modes = [_MODE_NAMES.get(name, name) for name in names]
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise UnsupportedModule(f"{where}: pooling mode(s) {unknown} unknown; supported: {list(POOLING_MODES)}")
    if raw is not None and not modes:
        raise UnsupportedModule(f"{where}: no pooling mode")
    return tuple(modes) or ("mean",)  # concatenated in this order, as sentence-transformers does


def _dense_layer(folder: Path, where: str) -> DenseLayer:
    config = _module_config(folder / "config.json", where)
    activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    name = activation.rsplit(".", 1)[-1]
    if not activation.startswith("torch.nn.") or name not in DENSE_ACTIVATIONS:
        raise UnsupportedModule(f"{where}: activation {activation!r} is not one of torch.nn's "
                                f"{list(DENSE_ACTIVATIONS)}")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") != "sentence_embedding":
            raise UnsupportedModule(f"{where}: a Dense on {config[key]!r} (not the sentence embedding) is not "
                                    "supported")
    return DenseLayer(folder, int(config["in_features"]), int(config["out_features"]), bool(config.get("bias", True)),
                      name)


def embedding_width(model_dir: Path) -> int | None:
    """The width of the vectors the checkpoint's modules make (the most Matryoshka `dimensions` a request may ask
    for), read from config.json and the modules without loading the model; None where config.json names no width."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    hidden = next((config[k] for k in ("hidden_size", "n_embd", "d_model") if isinstance(config.get(k), int)), None)
    modules = read_pooling_config(model_dir)
    if hidden is None and not modules.head:
        return None
    return modules.dimension(hidden)


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


# Output types of Cohere's embedding_types (and vLLM's /v2/embed). int8/uint8 use a fixed calibration range of
# [-1, 1] per dimension (a normalized vector's components), not ranges measured on each request's own batch, so a
# vector's codes do not depend on what else was in the request; values outside the range saturate. With that range
# the codes are what sentence_transformers.quantization.quantize_embeddings gives for ranges [-1, 1].
# binary / ubinary pack the signs (> 0) 8 to a byte as quantize_embeddings packs them.
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")
CALIBRATION_RANGE = (-1.0, 1.0)


def quantize(vectors: np.ndarray, embedding_type: str) -> list:
    """Rows of `vectors` (float32, [n, d]) as `embedding_type` values, ready for JSON."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if embedding_type == "float":
        return vectors.tolist()
    if embedding_type == "base64":
        return [embedding_to_base64(row) for row in vectors]
    if embedding_type in ("int8", "uint8"):
        low, high = CALIBRATION_RANGE
        step = (high - low) / 255
        codes = (np.clip(vectors, low, high) - low) / step
        codes = (codes - 128).astype(np.int8) if embedding_type == "int8" else codes.astype(np.uint8)
        return codes.tolist()
    if embedding_type in ("binary", "ubinary"):
        packed = np.packbits(vectors > 0, axis=-1)
        return ((packed.astype(np.int16) - 128).astype(np.int8) if embedding_type == "binary" else packed).tolist()
    raise ValueError(f"unknown embedding type {embedding_type!r}")
