"""The ONNX graph that `--engine onnx` runs: shipped with the checkpoint, or exported from it at load; int8 on request.

The graph takes the engine's token inputs (input_ids, attention_mask[, token_type_ids]; dynamic batch and sequence
axes) and returns the same named outputs as `EncoderEngine` ("embeddings" pooled, or "logits"). Pooling is traced
from `engine.encoder.pool` into the graph, so there is one pooling implementation for both engines, and Triton's
native onnxruntime backend can serve the graph as it is.

- Shipped: `onnx/model.onnx` (or `model.onnx`) in the model directory, as Optimum and sentence-transformers lay it
  out. Classification and fill-mask graphs must output "logits"; an embedding graph that outputs token states
  ("last_hidden_state" or "token_embeddings") gets the pooling graph appended.
- Exported: torch.onnx's TorchScript exporter (opset 17). The torch.export-based exporter gives the same numbers
  but took 98 s instead of 13 s for all-MiniLM-L6-v2 on the 2-core development machine.

Everything is written under a cache directory (`--onnx_cache_dir`, default `$HFSERVE_CACHE_DIR/onnx`, else the
system temp folder), never under the model directory, which is read-only in a pod. Entries are keyed by the
checkpoint's files (name, size, mtime), the task, pooling and the torch/onnx versions, and published atomically,
so a restarted container or a second process reuses them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from ..config import QUANTIZE_CHOICES
from ..tasks import Task
from ..tasks.embedding import read_embedding_modules

SHIPPED_FILES = ("onnx/model.onnx", "model.onnx")
TOKEN_STATE_OUTPUTS = ("last_hidden_state", "token_embeddings")
OPSET = 17
FORMAT_VERSION = "2"  # bump when what is written changes (2: fill_mask graphs give the top-k at the masks)


def default_onnx_cache_dir() -> Path:
    """`$HFSERVE_CACHE_DIR/onnx`, else `<temp>/hfserve-onnx` (an emptyDir-friendly place)."""
    if os.environ.get("HFSERVE_CACHE_DIR"):
        return Path(os.environ["HFSERVE_CACHE_DIR"]) / "onnx"
    return Path(tempfile.gettempdir()) / "hfserve-onnx"


def shipped_onnx(model_dir: Path) -> Path | None:
    for name in SHIPPED_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            return path
    return None


def prepare_onnx_model(model_dir: Path, task: Task, cache_dir: Path | None = None, quantize: str = "none",
                       trust_remote_code: bool = False) -> Path:
    """The path of the ONNX graph to run (fp32, or int8 when quantize == "int8"), building it once per cache."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE_CHOICES)}")
    model_dir = Path(model_dir)
    modules = read_embedding_modules(model_dir) if task == Task.TEXT_EMBEDDING else None
    pooling = modules.mode if modules else "none"
    # A shipped graph ends at the transformer: with a Dense or LayerNorm head, export the whole chain instead.
    shipped = shipped_onnx(model_dir) if not (modules and modules.head) else None
    cache_dir = Path(cache_dir) if cache_dir else default_onnx_cache_dir()
    folder = cache_dir / _cache_key(model_dir, task, pooling, shipped)
    fp32 = folder / "model.onnx"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / ".lock"):
        if not fp32.is_file():
            with _staging(cache_dir, folder) as staging:
                if shipped is not None:
                    adopt_shipped(shipped, task, pooling, staging / "model.onnx")
                else:
                    export_checkpoint(model_dir, task, staging / "model.onnx", trust_remote_code)
                (staging / "source.json").write_text(json.dumps(
                    {"model_dir": str(model_dir.resolve()), "task": task.value, "pooling": pooling,
                     "shipped": str(shipped) if shipped else None}, indent=1))
        if quantize == "none":
            return fp32
        int8 = folder / "model.int8.onnx"
        if not int8.is_file():
            quantize_int8(fp32, int8)
        return int8


def export_checkpoint(model_dir: Path, task: Task, out: Path, trust_remote_code: bool = False) -> None:
    """Trace EncoderEngine.forward_tensors (model + pooling) in float32 on the CPU into `out`."""
    import torch

    from .encoder import EncoderEngine

    engine = EncoderEngine.load(model_dir, task, dtype="float32", device="cpu", trust_remote_code=trust_remote_code)
    names = engine.input_names
    if "attention_mask" not in names:
        raise ValueError(f"{model_dir}: the model takes no attention_mask; --engine onnx needs one")
    graph = _forward_graph(engine)
    # A padded second row, so the exporter traces the masking path rather than an all-ones shortcut.
    ids = torch.full((2, 8), min(5, engine.config.vocab_size - 1), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes = {0: "batch", 1: "sequence"}
    outputs = list(engine.output_specs)
    dynamic = {name: axes for name in names}
    for name, (_, dims) in engine.output_specs.items():
        dynamic[name] = axes if dims[:1] == [-1] else {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(graph, tuple(example[name] for name in names), str(out), input_names=list(names),
                          output_names=outputs, dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def adopt_shipped(src: Path, task: Task, pooling: str, out: Path) -> None:
    """Copy a shipped graph into the cache with exactly the engine's outputs, appending pooling where needed."""
    import onnx

    model = onnx.load(str(src))
    outputs = [o.name for o in model.graph.output]
    inputs = [i.name for i in model.graph.input]
    wanted = "embeddings" if task == Task.TEXT_EMBEDDING else "logits"
    if wanted in outputs:
        _keep_outputs(model, [wanted])
    elif task == Task.TEXT_EMBEDDING and any(name in outputs for name in TOKEN_STATE_OUTPUTS):
        if "attention_mask" not in inputs:
            raise ValueError(f"{src}: an embedding graph without an attention_mask input cannot be pooled")
        token_states = next(name for name in TOKEN_STATE_OUTPUTS if name in outputs)
        _append_pooling(model, token_states, pooling)
    else:
        raise ValueError(f"{src} outputs {outputs}; task {task.value} needs {wanted!r}"
                         + (f" or one of {list(TOKEN_STATE_OUTPUTS)}" if task == Task.TEXT_EMBEDDING else ""))
    _save(model, out)


def quantize_int8(src: Path, out: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized per batch at run time.

    Choices measured on all-MiniLM-L6-v2 (minimum cosine to float32 over the load-test queries and sentences, on
    this AVX2 machine without VNNI): per-tensor signed weights 0.914; per-channel 0.989; per-channel unsigned
    weights (no int16 saturation in the AVX2 u8*s8 kernels) 0.990; and keeping the FFN down-projections in
    float32 (they read the widest activations, after GELU) 0.994. Only weight MatMuls are quantized.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src), load_external_data=False)
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    narrowing = [node.name for node in model.graph.node if node.op_type == "MatMul" and len(node.input) > 1
                 and len(shapes.get(node.input[1], [])) == 2 and shapes[node.input[1]][0] > shapes[node.input[1]][1]]
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        quantize_dynamic(str(src), str(tmp), op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QUInt8, nodes_to_exclude=narrowing,
                         extra_options={"MatMulConstBOnly": True})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _forward_graph(engine):
    """An nn.Module over an EncoderEngine: positional token tensors in, the engine's outputs (a tuple) out."""
    import torch

    class ForwardGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = engine.model

        def forward(self, *tensors):
            return tuple(engine.forward_tensors(dict(zip(engine.input_names, tensors))).values())

    return ForwardGraph().eval()


def _pooling_graph(mode: str, opset: int):
    """engine.encoder.pool as an ONNX graph: inputs (token_states [B, T, H] float32, attention_mask [B, T] int64)."""
    import onnx
    import torch

    from .encoder import pool

    class Pooling(torch.nn.Module):
        def forward(self, token_states, attention_mask):
            return pool(token_states, attention_mask, mode)

    states = torch.ones((2, 3, 4))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooling(), (states, mask), buffer, input_names=["token_states", "attention_mask"],
                          output_names=["embeddings"], opset_version=opset, dynamo=False,
                          dynamic_axes={"token_states": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}, "embeddings": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


def _append_pooling(model, token_states: str, mode: str) -> None:
    """Wire the pooling graph's nodes after `token_states`, reading the model's own attention_mask input."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    pooling = _pooling_graph(mode, max(opset, 14)).graph
    if opset < 14:
        raise ValueError(f"the shipped graph uses opset {opset}; pooling needs opset 14 or newer")
    prefix = "hfserve_pool/"
    renames = {"token_states": token_states, "attention_mask": "attention_mask", "embeddings": "embeddings"}

    def rename(name: str) -> str:
        return renames.get(name, prefix + name) if name else name

    for initializer in pooling.initializer:
        initializer.name = rename(initializer.name)
    for node in pooling.node:
        node.name = prefix + node.name
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    model.graph.node.extend(pooling.node)
    model.graph.initializer.extend(pooling.initializer)
    output = next(o for o in pooling.output if o.name == "embeddings")
    del model.graph.output[:]
    model.graph.output.append(output)


def _keep_outputs(model, names: list[str]) -> None:
    kept = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(kept)


def _save(model, out: Path) -> None:
    import onnx

    large = model.ByteSize() > (1 << 31) - (1 << 26)  # protobuf's 2 GiB limit: weights go to a side file
    onnx.save(model, str(out), save_as_external_data=large, location=out.name + ".data" if large else None)


def _cache_key(model_dir: Path, task: Task, pooling: str, shipped: Path | None) -> str:
    import onnx
    import onnxruntime

    digest = hashlib.sha256()
    versions = {"format": FORMAT_VERSION, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "opset": OPSET, "task": task.value, "pooling": pooling}
    with contextlib.suppress(ImportError):
        import torch

        versions["torch"] = torch.__version__.split("+")[0]
    digest.update(json.dumps(versions, sort_keys=True).encode())
    digest.update(str(model_dir.resolve()).encode())
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and ".git" not in p.parts):
        stat = path.stat()
        digest.update(f"{path.relative_to(model_dir)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    source = "shipped" if shipped else "export"
    return f"{model_dir.name or 'model'}-{task.value}-{source}-{digest.hexdigest()[:16]}"


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _staging(cache_dir: Path, final: Path):
    """A scratch folder published as `final` only when the block succeeds."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
