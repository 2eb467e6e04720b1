"""Build a Triton model repository (Python backend) from a Hugging Face checkpoint directory.

    <repository_dir>/<model_name>/config.pbtxt
    <repository_dir>/<model_name>/1/model.py      (hfserve.triton.model_py, runs hfserve.engine.encoder.EncoderEngine)

With `--engine onnx` the graph of hfserve.engine.onnx_export is prepared here (in its cache) and served either by
Triton's native onnxruntime backend (`--onnx_backend native`: `1/model.onnx`, no Python in the serving path) or,
where the Triton install has no such backend (the nvidia-pytriton wheel's), by the same model.py running ONNX
Runtime (`--onnx_backend python`). The launcher picks: native when `<backends>/onnxruntime` exists.

`python -m hfserve.triton.repository --model_name N --model_dir D --repository_dir R [...]` builds it from the command
line, whose options are hfserve.config's RepositoryConfig; `--config -` reads that RepositoryConfig as JSON from
stdin instead (the launcher hands its settings over so, in a child process, so that the long-lived supervisor never
imports torch).
Encoder tasks only: generative checkpoints are refused with `GenerativeTaskRefused`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as settings
from ..config import (
    DEFAULT_MAX_QUEUE_DELAY_US,
    BatchingConfig,
    ExecutionConfig,
    ModelConfig,
    RepositoryConfig,
    TritonBatchingConfig,
    check_quantize_placement,
)
from ..engine.loading import check_weights
from ..private_dir import private_dir
from ..tasks import ENCODER_TASKS, Task
from ..tasks.detect import infer_task
from ..tasks.embedding import read_embedding_modules

MODEL_FILE = Path(__file__).with_name("model_py.py")
# Exit status of the launcher and the builder when the checkpoint's task is generative.
EXIT_GENERATIVE = 3
ONNX_MODEL_FILE = "model.onnx"


class GenerativeTaskRefused(ValueError):
    def __init__(self, task: Task, model_dir: Path):
        super().__init__(
            f"task {task.value!r} of {model_dir} is generative; the kserve-huggingface-triton runtime serves encoder "
            f"tasks only ({', '.join(sorted(t.value for t in ENCODER_TASKS))}). "
            "Serve this model with the kserve-huggingface runtime instead."
        )
        self.task = task


@dataclass
class RepositorySpec:
    model_name: str
    model_dir: Path
    task: Task
    input_names: tuple[str, ...]
    output_specs: dict[str, tuple[str, list[int]]]
    dtype: str = "auto"
    kind: str = "KIND_CPU"
    max_batch_size: int = 32
    preferred_batch_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US
    instance_count: int = 1
    trust_remote_code: bool = False
    max_batch_tokens: int | None = None  # model.py's per-pass token bound; None: its device default
    engine: str = "torch"
    quantize: str = "none"
    onnx_cache_dir: Path | None = None
    onnx_backend: str = "python"
    onnx_file: Path | None = None  # the prepared graph, for the native backend

    @property
    def native_onnx(self) -> bool:
        return self.engine == "onnx" and self.onnx_backend == "native"


def check_encoder_task(model_dir: Path, task: str | Task | None) -> Task:
    """The checkpoint's task (torch-free); raises GenerativeTaskRefused for generative ones."""
    resolved = infer_task(Path(model_dir), task)
    if resolved not in ENCODER_TASKS:
        raise GenerativeTaskRefused(resolved, Path(model_dir))
    return resolved


def describe_model(model_dir: Path, task: Task, trust_remote_code: bool = False):
    """(input_names, output_specs) as EncoderEngine sees them, without loading the weights (meta device)."""
    import torch
    from transformers import AutoConfig

    from ..engine.encoder import MODEL_CLASSES, EncoderEngine, tokenizer_inputs

    config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    try:
        with torch.device("meta"):
            model = MODEL_CLASSES[task].from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - some remote-code models cannot be built on meta: load them for real
        engine = EncoderEngine.load(model_dir, task=task, dtype="float32", device="cpu",
                                    trust_remote_code=trust_remote_code)
        return engine.input_names, engine.output_specs
    modules = read_embedding_modules(Path(model_dir)) if task == Task.TEXT_EMBEDDING else None
    engine = EncoderEngine(model, task, torch.device("meta"), modules, token_inputs=tokenizer_inputs(model_dir))
    return engine.input_names, engine.output_specs


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _q(value: str) -> str:
    return json.dumps(str(value))  # protobuf text format accepts JSON-style double-quoted strings


def render_config(spec: RepositorySpec) -> str:
    # allow_ragged_batch: requests of different lengths may share one execute() (the dynamic batcher otherwise only
    # merges requests of identical shapes); model.py pads them to a common length itself. Triton's onnxruntime
    # backend cannot take ragged inputs, so there the dynamic batcher merges only requests of one shape.
    preferred = [b for b in spec.preferred_batch_sizes if 0 < b <= spec.max_batch_size]
    ragged = "" if spec.native_onnx else "\n    allow_ragged_batch: true"
    lines = [
        f"name: {_q(spec.model_name)}",
        'backend: "onnxruntime"' if spec.native_onnx else 'backend: "python"',
        f"max_batch_size: {spec.max_batch_size}",
    ]
    if spec.native_onnx:
        lines.append(f"default_model_filename: {_q(ONNX_MODEL_FILE)}")
    lines.append("dynamic_batching {")
    if preferred:
        lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]")
    lines += [f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}", "}", "input ["]
    lines.append(",\n".join(
        f'  {{\n    name: {_q(name)}\n    data_type: TYPE_INT64\n    dims: [ -1 ]{ragged}\n  }}'
        for name in spec.input_names))
    lines += ["]", "output ["]
    lines.append(",\n".join(
        f'  {{\n    name: {_q(name)}\n    data_type: TYPE_{dtype}\n    dims: [ {", ".join(str(d) for d in dims)} ]\n  }}'
        for name, (dtype, dims) in spec.output_specs.items()))
    lines += ["]", "instance_group [", f"  {{\n    count: {spec.instance_count}\n    kind: {spec.kind}\n  }}", "]"]
    if spec.native_onnx:
        return "\n".join(lines) + "\n"
    params = {
        "model_dir": str(Path(spec.model_dir).resolve()),
        "task": spec.task.model_task.value,
        "dtype": spec.dtype,
        "trust_remote_code": "true" if spec.trust_remote_code else "false",
        "max_batch_tokens": str(spec.max_batch_tokens or ""),
        # The stub's Python ignores PYTHONPATH: model.py imports hfserve from where this builder's copy lives, so
        # the copied model.py and the package it calls always come from one source tree.
        "hfserve_path": str(Path(__file__).resolve().parents[2]),
    }
    if spec.engine == "onnx":
        params.update(engine="onnx", quantize=spec.quantize,
                      onnx_cache_dir=str(Path(spec.onnx_cache_dir).resolve()) if spec.onnx_cache_dir else "")
    for key, value in params.items():
        lines.append(f"parameters: {{\n  key: {_q(key)}\n  value: {{ string_value: {_q(value)} }}\n}}")
    return "\n".join(lines) + "\n"


def write_repository(spec: RepositorySpec, repository_dir: Path) -> Path:
    """Write (replacing) `<repository_dir>/<model_name>/`; returns the model folder."""
    model_folder = private_dir(repository_dir) / spec.model_name  # Triton runs its model.py: ours alone
    if model_folder.exists():
        shutil.rmtree(model_folder)
    (model_folder / "1").mkdir(parents=True)
    (model_folder / "config.pbtxt").write_text(render_config(spec))
    if spec.native_onnx:
        for part in [spec.onnx_file, *Path(spec.onnx_file).parent.glob(Path(spec.onnx_file).name + ".data")]:
            dest = ONNX_MODEL_FILE if part == spec.onnx_file else ONNX_MODEL_FILE + ".data"
            shutil.copyfile(part, model_folder / "1" / dest)
    else:
        shutil.copyfile(MODEL_FILE, model_folder / "1" / "model.py")
    return model_folder


def build_repository(
    model_dir: Path,
    repository_dir: Path,
    model_name: str,
    task: str | Task | None = None,
    dtype: str = "auto",
    device: str = "auto",
    max_batch_size: int = 32,
    preferred_batch_sizes: list[int] | tuple[int, ...] = (8, 16, 32),
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
    instance_count: int = 1,
    trust_remote_code: bool = False,
    max_batch_tokens: int | None = None,
    engine: str = "torch",
    quantize: str = "none",
    onnx_cache_dir: Path | None = None,
    onnx_backend: str = "python",
    allow_pickle_weights: bool = False,
) -> RepositorySpec:
    """`build` with the settings as keywords (tests and benchmarks)."""
    return build(RepositoryConfig(
        model_name=model_name, repository_dir=Path(repository_dir), onnx_backend=onnx_backend,
        model=ModelConfig(model_dir=Path(model_dir), task=task.value if isinstance(task, Task) else task,
                          trust_remote_code=trust_remote_code),
        execution=ExecutionConfig(dtype=dtype, device=device, engine=engine, quantize=quantize,
                                  onnx_cache_dir=Path(onnx_cache_dir) if onnx_cache_dir else None,
                                  allow_pickle_weights=allow_pickle_weights),
        batching=BatchingConfig(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens),
        triton_batching=TritonBatchingConfig(preferred_batch_sizes=tuple(preferred_batch_sizes),
                                             max_queue_delay_us=max_queue_delay_us, instance_count=instance_count)))


def instance_kind(device: str) -> str:
    """Triton's instance kind for --device (auto: a GPU when torch sees one)."""
    settings.check_device(device)
    if device == "cuda":
        if not cuda_available():
            raise ValueError("--device cuda was requested but no CUDA device is available")
        return "KIND_GPU"
    if device == "auto":
        return "KIND_GPU" if cuda_available() else "KIND_CPU"
    return "KIND_CPU"


def resolve_onnx_backend(choice: str, install=None) -> str:
    """auto: native when the Triton install (default: tritonserver on PATH) has the onnxruntime backend."""
    if choice != "auto":
        return choice
    if install is None:
        binary = shutil.which("tritonserver")
        return "native" if binary and native_onnx_backend_available(None, Path(binary)) else "python"
    return "native" if native_onnx_backend_available(install.backend_dir, install.binary) else "python"


def build(config: RepositoryConfig) -> RepositorySpec:
    """Validate the settings, describe the model and write `<repository_dir>/<model_name>/`."""
    config.validate()
    execution, batching, triton_batching = config.execution, config.batching, config.triton_batching
    model_dir = Path(config.model.model_dir)
    resolved = check_encoder_task(model_dir, config.model.task)
    check_weights(model_dir, execution.allow_pickle_weights)
    kind = instance_kind(execution.device)
    check_quantize_placement(execution.quantize, on_gpu=kind == "KIND_GPU")
    trust_remote_code = config.model.trust_remote_code
    input_names, output_specs = describe_model(model_dir, resolved, trust_remote_code)
    onnx_file = None
    if execution.engine == "onnx":
        from ..engine.onnx_export import prepare_onnx_model

        onnx_file = prepare_onnx_model(model_dir, resolved, execution.onnx_cache_dir, execution.quantize,
                                       trust_remote_code)
        input_names = onnx_input_names(onnx_file)
    spec = RepositorySpec(
        model_name=config.model_name, model_dir=model_dir, task=resolved, input_names=tuple(input_names),
        output_specs=dict(output_specs), dtype=execution.dtype, kind=kind, max_batch_size=batching.max_batch_size,
        preferred_batch_sizes=sorted(set(triton_batching.preferred_batch_sizes)),
        max_queue_delay_us=triton_batching.max_queue_delay_us, instance_count=triton_batching.instance_count,
        trust_remote_code=trust_remote_code, max_batch_tokens=batching.max_batch_tokens,
        engine=execution.engine, quantize=execution.quantize, onnx_cache_dir=execution.onnx_cache_dir,
        onnx_backend=resolve_onnx_backend(config.onnx_backend), onnx_file=onnx_file,
    )
    write_repository(spec, Path(config.repository_dir))
    return spec


def onnx_input_names(path: Path) -> tuple[str, ...]:
    """The graph's token inputs in the engine's order (a shipped graph may lack token_type_ids)."""
    import onnx

    graph_inputs = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    return tuple(name for name in ("input_ids", "attention_mask", "token_type_ids") if name in graph_inputs)


def native_onnx_backend_available(backend_dir: Path | None, binary: Path) -> bool:
    """Whether this Triton install has the onnxruntime backend (NVIDIA's image: /opt/tritonserver/backends)."""
    folder = Path(backend_dir) if backend_dir else Path(binary).resolve().parent.parent / "backends"
    return (folder / "onnxruntime").is_dir()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hfserve.triton.repository", description=__doc__.splitlines()[0],
                                     allow_abbrev=False, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", metavar="FILE",
                        help="Read every setting from this RepositoryConfig JSON file ('-': stdin) instead of the "
                             "options below (then the only option)")
    settings.add_to_parser(parser, RepositoryConfig, required=settings.BUILDER_REQUIRED)
    return parser


def read_config(argv: list[str] | None = None) -> RepositoryConfig:
    """The settings from the command line, or from --config's JSON."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not any(a.split("=", 1)[0] == "--config" for a in argv):
        return settings.from_namespace(RepositoryConfig, parser.parse_args(argv))
    sources = argv[0].split("=", 1)[1:] if argv[0].startswith("--config=") else argv[1:]
    if len(sources) != 1 or argv[0].split("=", 1)[0] != "--config":
        parser.error("--config takes one file and no other option")
    text = sys.stdin.read() if sources[0] == "-" else Path(sources[0]).read_text()
    try:
        return RepositoryConfig.from_json(text)
    except (ValueError, TypeError) as exc:
        parser.error(f"--config {sources[0]}: {exc}")


def main(argv: list[str] | None = None) -> int:
    config = read_config(argv)
    try:
        spec = build(config)
    except GenerativeTaskRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_GENERATIVE
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"model": spec.model_name, "task": spec.task.value, "kind": spec.kind,
                      "engine": spec.engine, "quantize": spec.quantize,
                      "backend": "onnxruntime" if spec.native_onnx else "python",
                      "inputs": list(spec.input_names), "outputs": {k: list(v) for k, v in spec.output_specs.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
