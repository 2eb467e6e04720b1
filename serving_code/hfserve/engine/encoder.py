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
from ..tasks.params import MAX_TOP_K
from .device import resolve_device, resolve_dtype

MODEL_CLASSES = {
    Task.TEXT_EMBEDDING: AutoModel,
    Task.SEQUENCE_CLASSIFICATION: AutoModelForSequenceClassification,
    Task.RERANK: AutoModelForSequenceClassification,
    Task.TOKEN_CLASSIFICATION: AutoModelForTokenClassification,
    Task.FILL_MASK: AutoModelForMaskedLM,
}
# fill_mask's outputs, [T, K] per text: the K best candidates (softmax probability, token id) at each mask token,
# zeros at every other position. Never [T, vocab]: for bert-base that was 62.5 MB per text, 4 GB per request.
# Ids travel as float32 beside the scores (one dtype for every output, Triton's included): exact below 2**24,
# far above any vocabulary.
MASK_OUTPUTS = ("mask_scores", "mask_ids")


class EncoderEngine:
    def __init__(self, model: torch.nn.Module, task: Task, device: torch.device,
                 modules: EmbeddingModules | None = None, head: torch.nn.Module | None = None,
                 token_inputs: tuple[str, ...] | None = None, mask_token_id: int | None = None):
        self.model = model
        self.task = task
        self.device = device
        self.mask_token_id = mask_token_id
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
        token_inputs, mask_token_id = tokenizer_facts(Path(model_dir), trust_remote_code)
        return cls(model, task, torch_device, modules, head, token_inputs, mask_token_id)

    @property
    def config(self):
        return self.model.config

    @torch.inference_mode()
    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
                   for name in self.input_names if name in inputs}
        outputs = self.fill_mask_tensors(tensors) if self.task == Task.FILL_MASK else self.forward_tensors(tensors)
        return {name: _to_numpy(value) for name, value in outputs.items()}

    def forward_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The model and, for embeddings, pooling; for fill_mask the top-k at the masks over full logits (what the
        ONNX export traces: a static graph; `forward` runs the cheaper fill_mask_tensors)."""
        output = self.model(**tensors)
        if self.task == Task.TEXT_EMBEDDING:
            pooled = pool(output.last_hidden_state, tensors["attention_mask"], self.modules.pooling)
            return {"embeddings": pooled if self.head is None else self.head(pooled)}
        if self.task == Task.FILL_MASK:
            scores, ids = output.logits.float().softmax(dim=-1).topk(self.candidates, dim=-1)
            keep = (tensors["input_ids"] == self._mask_id()).unsqueeze(-1)
            return {"mask_scores": torch.where(keep, scores, 0.0), "mask_ids": torch.where(keep, ids.float(), 0.0)}
        return {"logits": output.logits}

    @property
    def candidates(self) -> int:
        return fill_mask_candidates(self.model.config)

    def _mask_id(self) -> int:
        return -1 if self.mask_token_id is None else self.mask_token_id  # -1: no position is a mask

    def fill_mask_tensors(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """forward_tensors' fill_mask outputs, with the vocabulary projection run on the mask positions' hidden
        states only (a pre-hook on the output embeddings gathers them), so no [B, T, vocab] tensor is made. A head
        that does not go through get_output_embeddings() still gets its full logits gathered after the fact."""
        is_mask = tensors["input_ids"] == self._mask_id()
        rows, cols = is_mask.nonzero(as_tuple=True)
        projection = self.model.get_output_embeddings()

        def gather(_module, args):
            hidden = args[0]
            return (hidden[rows, cols], *args[1:]) if hidden.dim() == 3 else None

        handle = projection.register_forward_pre_hook(gather) if projection is not None else None
        try:
            logits = self.model(**tensors).logits
        finally:
            if handle is not None:
                handle.remove()
        if logits.dim() == 3:
            logits = logits[rows, cols]
        scores, ids = logits.float().softmax(dim=-1).topk(self.candidates, dim=-1)
        shape = (*is_mask.shape, self.candidates)
        mask_scores = torch.zeros(shape, dtype=torch.float32, device=scores.device)
        mask_ids = torch.zeros(shape, dtype=torch.float32, device=scores.device)
        mask_scores[rows, cols] = scores
        mask_ids[rows, cols] = ids.float()
        return {"mask_scores": mask_scores, "mask_ids": mask_ids}


def tokenizer_inputs(model_dir: Path, trust_remote_code: bool = False) -> tuple[str, ...] | None:
    """The inputs the checkpoint's tokenizer produces (its model_input_names), None where it has no tokenizer."""
    return tokenizer_facts(model_dir, trust_remote_code)[0]


def tokenizer_facts(model_dir: Path, trust_remote_code: bool = False) -> tuple[tuple[str, ...] | None, int | None]:
    """The tokenizer's model_input_names and mask_token_id; (None, None) where the checkpoint has no tokenizer."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None, None
    return tuple(tokenizer.model_input_names), tokenizer.mask_token_id


def fill_mask_candidates(config) -> int:
    """Candidates kept per mask: the most a request may ask for (top_k), or the whole vocabulary if smaller."""
    return min(MAX_TOP_K, config.vocab_size)


def output_specs(task: Task, config, modules: EmbeddingModules | None = None) -> dict[str, tuple[str, list[int]]]:
    """Named float32 outputs of a task's forward pass and their per-row dims (-1: the sequence length)."""
    if task == Task.TEXT_EMBEDDING:
        return {"embeddings": ("FP32", [(modules or EmbeddingModules()).dimension(config.hidden_size)])}
    if task in (Task.SEQUENCE_CLASSIFICATION, Task.RERANK):
        return {"logits": ("FP32", [config.num_labels])}
    if task == Task.TOKEN_CLASSIFICATION:
        return {"logits": ("FP32", [-1, config.num_labels])}
    return {name: ("FP32", [-1, fill_mask_candidates(config)]) for name in MASK_OUTPUTS}


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
