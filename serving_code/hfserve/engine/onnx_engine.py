"""Encoder forward passes with ONNX Runtime (`--engine onnx`): the same inputs and named outputs as EncoderEngine.

The graph comes from `onnx_export.prepare_onnx_model` (shipped or exported, pooling inside, optionally int8), so
the task handlers after it are the torch engine's. Execution providers follow the device:
- cpu: CPUExecutionProvider;
- cuda: TensorrtExecutionProvider then CUDAExecutionProvider, whichever the installed onnxruntime build has
  (the `onnxruntime-gpu` package; the CPU package has neither, and asking for cuda then fails at load);
- auto: the GPU providers when the installed build has one, else the CPU.
The graph runs in float32 (TensorRT may pick fp16 kernels with --dtype float16); int8 is a CPU option.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import check_device, check_quantize_placement
from ..tasks import ENCODER_TASKS, Task
from ..tasks.detect import infer_task
from ..tasks.embedding import read_embedding_modules
from .onnx_export import default_onnx_cache_dir, prepare_onnx_model

log = logging.getLogger("hfserve.engine")

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
TOKEN_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Device:
    """Where the session runs, read like torch.device (`.type`) by the batch limits and logs."""

    type: str

    def __str__(self) -> str:
        return self.type


class OnnxEncoderEngine:
    def __init__(self, session, task: Task, config, path: Path, modules=None, mask_token_id: int | None = None):
        self.session = session
        self.task = task
        self.config = config
        self.path = path
        self.mask_token_id = mask_token_id
        graph_inputs = {i.name for i in session.get_inputs()}
        self.input_names = tuple(name for name in TOKEN_INPUT_ORDER if name in graph_inputs)
        missing = graph_inputs - set(self.input_names)
        if missing:
            raise ValueError(f"{path}: graph inputs {sorted(missing)} are not token inputs {TOKEN_INPUT_ORDER}")
        from .encoder import output_specs

        self.output_specs = output_specs(task, config, modules)
        self.output_names = list(self.output_specs)
        # A fill_mask graph exported here computes the top-k at the masks itself (EncoderEngine.forward_tensors);
        # a shipped one gives logits, reduced per pass here (fill_mask_from_logits), never kept per text.
        self.from_logits = task == Task.FILL_MASK and "mask_scores" not in {o.name for o in session.get_outputs()}
        self.providers = session.get_providers()
        self.device = Device("cuda" if self.providers[0] in GPU_PROVIDERS else "cpu")

    @classmethod
    def load(cls, model_dir: Path, task: Task | str | None = None, dtype: str = "auto", device: str = "auto",
             trust_remote_code: bool = False, quantize: str = "none", cache_dir: Path | None = None,
             device_id: int = 0) -> "OnnxEncoderEngine":
        import onnxruntime
        from transformers import AutoConfig

        model_dir = Path(model_dir)
        task = infer_task(model_dir, task)
        if task not in ENCODER_TASKS:
            raise ValueError(f"task {task} is generative; --engine onnx serves encoder tasks only")
        providers = select_providers(device, onnxruntime.get_available_providers(), dtype, quantize, device_id,
                                     Path(cache_dir) if cache_dir else default_onnx_cache_dir())
        path = prepare_onnx_model(model_dir, task, cache_dir, quantize, trust_remote_code)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        modules = read_embedding_modules(model_dir) if task == Task.TEXT_EMBEDDING else None
        from .encoder import tokenizer_facts

        mask_token_id = tokenizer_facts(model_dir, trust_remote_code)[1] if task == Task.FILL_MASK else None
        engine = cls(session, task, config, path, modules, mask_token_id)
        log.info("onnx engine: %s on %s", path, engine.providers)
        return engine

    def forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.int64) for name in self.input_names}
        if self.from_logits:
            (logits,) = self.session.run(["logits"], feed)
            return fill_mask_from_logits(logits, feed["input_ids"], self.mask_token_id,
                                         self.output_specs["mask_scores"][1][-1])
        values = self.session.run(self.output_names, feed)
        return {name: value.astype(np.float32, copy=False) for name, value in zip(self.output_names, values)}


def fill_mask_from_logits(logits: np.ndarray, input_ids: np.ndarray, mask_token_id: int | None,
                          candidates: int) -> dict[str, np.ndarray]:
    """EncoderEngine's fill_mask outputs from a pass's [B, T, vocab] logits: the softmax and the top-k at the mask
    positions only, zeros elsewhere."""
    rows, cols = np.nonzero(input_ids == (-1 if mask_token_id is None else mask_token_id))
    at_masks = logits[rows, cols].astype(np.float32)
    at_masks = np.exp(at_masks - at_masks.max(axis=-1, keepdims=True))
    at_masks /= at_masks.sum(axis=-1, keepdims=True)
    best = np.argsort(-at_masks, axis=-1, kind="stable")[:, :candidates]
    scores = np.zeros((*input_ids.shape, candidates), dtype=np.float32)
    ids = np.zeros_like(scores)
    scores[rows, cols] = np.take_along_axis(at_masks, best, axis=-1)
    ids[rows, cols] = best
    return {"mask_scores": scores, "mask_ids": ids}


def select_providers(device: str, available: list[str], dtype: str = "auto", quantize: str = "none",
                     device_id: int = 0, cache_dir: Path | None = None) -> list:
    """ONNX Runtime providers (with options) for --device/--dtype/--quantize, or ValueError saying what is wrong."""
    gpu = [name for name in GPU_PROVIDERS if name in available]
    check_device(device)
    if device == "cuda" and not gpu:
        raise ValueError("--device cuda with --engine onnx needs an onnxruntime build with the CUDA or TensorRT "
                         f"execution provider (onnxruntime-gpu); this one has {available}")
    use_gpu = bool(gpu) and device != "cpu"
    check_quantize_placement(quantize, on_gpu=use_gpu)
    if dtype in ("float16", "bfloat16") and not (use_gpu and "TensorrtExecutionProvider" in gpu and dtype == "float16"):
        raise ValueError(f"--engine onnx runs the float32 graph; --dtype {dtype} is not available here "
                         "(float16 needs the TensorRT execution provider)")
    if not use_gpu:
        return ["CPUExecutionProvider"]
    providers: list = []
    if "TensorrtExecutionProvider" in gpu:
        trt_cache = str((cache_dir or default_onnx_cache_dir()) / "tensorrt")
        providers.append(("TensorrtExecutionProvider", {
            "device_id": device_id, "trt_fp16_enable": dtype in ("auto", "float16"),
            "trt_engine_cache_enable": True, "trt_engine_cache_path": trt_cache}))
    if "CUDAExecutionProvider" in gpu:
        providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
    return providers + ["CPUExecutionProvider"]
