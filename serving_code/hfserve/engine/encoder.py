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
from ..tasks.embedding import read_pooling_config
from .device import resolve_device, resolve_dtype

MODEL_CLASSES = {
    Task.TEXT_EMBEDDING: AutoModel,
    Task.SEQUENCE_CLASSIFICATION: AutoModelForSequenceClassification,
    Task.RERANK: AutoModelForSequenceClassification,
    Task.TOKEN_CLASSIFICATION: AutoModelForTokenClassification,
    Task.FILL_MASK: AutoModelForMaskedLM,
}


class EncoderEngine:
    def __init__(self, model: torch.nn.Module, task: Task, device: torch.device, pooling: str = "mean"):
        self.model = model
        self.task = task
        self.device = device
        self.pooling = pooling
        accepted = inspect.signature(model.forward).parameters
        self.input_names = tuple(
            name for name in ("input_ids", "attention_mask", "token_type_ids") if name in accepted
        )
        self.output_specs = self._output_specs()

    @classmethod
    def load(cls, model_dir: Path, task: Task | str | None = None, dtype: str = "auto", device: str = "auto",
             trust_remote_code: bool = False) -> "EncoderEngine":
        task = infer_task(Path(model_dir), task)
        if task not in ENCODER_TASKS:
            raise ValueError(f"task {task} is generative; EncoderEngine serves {sorted(t.value for t in ENCODER_TASKS)}")
        torch_device = resolve_device(device)
        model = MODEL_CLASSES[task].from_pretrained(
            str(model_dir), dtype=resolve_dtype(dtype, torch_device), trust_remote_code=trust_remote_code
        )
        model.to(torch_device).eval()
        pooling = read_pooling_config(Path(model_dir)).mode if task == Task.TEXT_EMBEDDING else "mean"
        return cls(model, task, torch_device, pooling)

    def _output_specs(self) -> dict[str, tuple[str, list[int]]]:
        config = self.model.config
        if self.task == Task.TEXT_EMBEDDING:
            return {"embeddings": ("FP32", [config.hidden_size])}
        if self.task in (Task.SEQUENCE_CLASSIFICATION, Task.RERANK):
            return {"logits": ("FP32", [config.num_labels])}
        if self.task == Task.TOKEN_CLASSIFICATION:
            return {"logits": ("FP32", [-1, config.num_labels])}
        return {"logits": ("FP32", [-1, config.vocab_size])}

    @torch.inference_mode()
    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
                   for name in self.input_names if name in inputs}
        output = self.model(**tensors)
        if self.task == Task.TEXT_EMBEDDING:
            pooled = pool(output.last_hidden_state, tensors["attention_mask"], self.pooling)
            return {"embeddings": _to_numpy(pooled)}
        return {"logits": _to_numpy(output.logits)}


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = attention_mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    return summed / counts


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
