"""Encoder forward passes: token ids in, the task's named float32 outputs out.

The same class runs in the kserve-huggingface process and inside Triton's Python backend,
which is what makes the two runtimes numerically interchangeable.
"""

import inspect
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from ..tasks import ENCODER_TASKS, Task
from ..tasks.detect import infer_task
from ..tasks.embedding import DenseLayer, EmbeddingModules, read_embedding_modules
from .device import resolve_device, resolve_dtype

MODEL_CLASSES = {
    Task.TEXT_EMBEDDING: AutoModel,
    Task.SEQUENCE_CLASSIFICATION: AutoModelForSequenceClassification,
    Task.RERANK: AutoModelForSequenceClassification,
    Task.TOKEN_CLASSIFICATION: AutoModelForTokenClassification,
    Task.FILL_MASK: AutoModelForMaskedLM,
}


class EncoderEngine:
    def __init__(self, model: torch.nn.Module, task: Task, device: torch.device,
                 modules: EmbeddingModules | None = None, head: torch.nn.Module | None = None,
                 token_inputs: tuple[str, ...] | None = None):
        self.model = model
        self.task = task
        self.device = device
        self.modules = modules or EmbeddingModules()
        self.head = head
        accepted = inspect.signature(model.forward).parameters
        # What the model's forward takes and the tokenizer produces: GPT-2's forward takes token_type_ids, its
        # tokenizer makes none, and zeros there would add token 0's embedding to every position.
        self.input_names = tuple(
            name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted
            and (token_inputs is None or name in token_inputs or name == "attention_mask")
        )
        self.output_specs = output_specs(task, model.config, self.modules)

    @classmethod
    def load(cls, model_dir: Path, task: Task | str | None = None, dtype: str = "auto", device: str = "auto",
             trust_remote_code: bool = False) -> "EncoderEngine":
        task = infer_task(Path(model_dir), task)
        if task not in ENCODER_TASKS:
            raise ValueError(f"task {task} is generative; EncoderEngine serves {sorted(t.value for t in ENCODER_TASKS)}")
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        modules = read_embedding_modules(Path(model_dir)) if task == Task.TEXT_EMBEDDING else EmbeddingModules()
        model = MODEL_CLASSES[task].from_pretrained(
            str(model_dir), dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        model.to(torch_device).eval()
        head = load_head(modules, model.config.hidden_size)
        if head is not None:
            head.to(device=torch_device, dtype=torch_dtype).eval()
        return cls(model, task, torch_device, modules, head, tokenizer_inputs(Path(model_dir), trust_remote_code))

    @property
    def config(self):
        return self.model.config

    @torch.inference_mode()
    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
                   for name in self.input_names if name in inputs}
        return {name: _to_numpy(value) for name, value in self.forward_tensors(tensors).items()}

    def forward_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model and, for embeddings, pooling: what `forward` runs and what the ONNX export traces."""
        output = self.model(**tensors)
        if self.task == Task.TEXT_EMBEDDING:
            pooled = pool(output.last_hidden_state, tensors["attention_mask"], self.modules.pooling)
            return {"embeddings": pooled if self.head is None else self.head(pooled)}
        return {"logits": output.logits}


def tokenizer_inputs(model_dir: Path, trust_remote_code: bool = False) -> tuple[str, ...] | None:
    """The inputs the checkpoint's tokenizer produces (its model_input_names), None where it has no tokenizer."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    return tuple(tokenizer.model_input_names)


def output_specs(task: Task, config, modules: EmbeddingModules | None = None) -> dict[str, tuple[str, list[int]]]:
    """Named float32 outputs of a task's forward pass and their per-row dims (-1: the sequence length)."""
    if task == Task.TEXT_EMBEDDING:
        return {"embeddings": ("FP32", [(modules or EmbeddingModules()).dimension(config.hidden_size)])}
    if task in (Task.SEQUENCE_CLASSIFICATION, Task.RERANK):
        return {"logits": ("FP32", [config.num_labels])}
    if task == Task.TOKEN_CLASSIFICATION:
        return {"logits": ("FP32", [-1, config.num_labels])}
    return {"logits": ("FP32", [-1, config.vocab_size])}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, modes: tuple[str, ...] | str) -> torch.Tensor:
    """sentence-transformers' Pooling over right-padded rows; several modes are concatenated in the given order."""
    if isinstance(modes, str):
        modes = tuple(modes.split("+"))
    pooled = [_pool_one(hidden, attention_mask, mode) for mode in modes]
    return pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)


def _pool_one(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    if mode == "weightedmean":  # position weights 1..T over the real tokens
        weights = mask * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    return summed / counts


def load_head(modules: EmbeddingModules, hidden_size: int) -> torch.nn.Module | None:
    """The checkpoint's Dense and LayerNorm modules after pooling, with their weights, as one torch module."""
    if not modules.head:
        return None
    layers, width = [], hidden_size * len(modules.pooling)
    for layer in modules.head:
        if isinstance(layer, DenseLayer):
            if layer.in_features != width:
                raise ValueError(f"{layer.path}: in_features {layer.in_features}, but its input has {width}")
            linear = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
            _load_weights(linear, layer.path, "linear.")
            layers += [linear, getattr(torch.nn, layer.activation)()]
            width = layer.out_features
        else:
            if layer.dimension != width:
                raise ValueError(f"{layer.path}: dimension {layer.dimension}, but its input has {width}")
            norm = torch.nn.LayerNorm(layer.dimension)
            _load_weights(norm, layer.path, "norm.")
            layers.append(norm)
    return torch.nn.Sequential(*layers).requires_grad_(False)


def _load_weights(module: torch.nn.Module, folder: Path, prefix: str) -> None:
    """A sentence-transformers module's weights: model.safetensors, else pytorch_model.bin read with
    weights_only (no pickled code runs)."""
    safetensors_path, pickle_path = Path(folder) / "model.safetensors", Path(folder) / "pytorch_model.bin"
    if safetensors_path.is_file():
        from safetensors.torch import load_file

        state = load_file(str(safetensors_path))
    elif pickle_path.is_file():
        state = torch.load(str(pickle_path), map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"{folder}: no model.safetensors or pytorch_model.bin")
    state = {k.removeprefix(prefix): v for k, v in state.items()}
    module.load_state_dict(state, strict=True)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
