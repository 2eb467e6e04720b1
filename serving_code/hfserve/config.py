"""Every setting of hfserve's command lines, declared once (as vLLM's EngineArgs and TEI's Args are).

Each group is a frozen dataclass and each of its fields is one `--<field name>` option. A field's metadata holds its
help text, its choices, the function that parses its value and, where one feeds its default, the environment
variable. `add_to_parser` generates the argparse options of a command line from the groups it takes, and
`from_namespace` reads a group back from the parsed arguments. Every rule that joins two settings is written once,
in a group's `validate()` or in a `check_*` function here that the engines call when a setting is resolved at load
(an `auto` device becomes a real one).

The command lines and their groups:
- `python -m hfserve.huggingface` (runtime 1): kserve's own options, then HUGGINGFACE_GROUPS;
- `python -m hfserve.transformer`: kserve's own options, then TRANSFORMER_GROUPS;
- `python -m hfserve.triton` (the Triton launcher): LAUNCHER_GROUPS;
- `python -m hfserve.triton.repository` (the repository builder): RepositoryConfig, or `--config` with its JSON.

Torch-free and kserve-free: the launcher and the transformer import it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .tasks import Task

if typing.TYPE_CHECKING:  # tasks.tokenization imports transformers, which the launcher must not import
    from .tasks.tokenization import TokenizerOptions

DTYPE_CHOICES = ("auto", "float32", "float16", "bfloat16")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
ENGINE_CHOICES = ("torch", "onnx")
QUANTIZE_CHOICES = ("none", "int8")
ONNX_BACKEND_CHOICES = ("auto", "native", "python")
TASK_CHOICES = tuple(t.value for t in Task)
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

# How long Triton's dynamic batcher holds a request for company. Every request waits it out when traffic is light,
# so it is a latency cost at concurrency 1; 500 us keeps the batches and the throughput of 2000 us at concurrency 32
# and costs nothing measurable at 1, where 2000 us made batching 12% slower than no batching (docs/benchmarks.md).
DEFAULT_MAX_QUEUE_DELAY_US = 500


class ConfigError(ValueError):
    """Settings that cannot go together, or a value outside its choices; the message names the flags."""


# ------------------------------------------------------------------------------------------------------------------
# value parsers (argparse `type=`): each refuses with a message that says what was expected


def positive_int(text) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def positive_float(text) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def parse_bool(text) -> bool:
    if isinstance(text, bool):
        return text
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def key_file(text) -> Path:
    """An API key file must be readable and hold a key (its content is never put in a message)."""
    path = Path(text)
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise argparse.ArgumentTypeError(f"cannot read {path} ({type(error).__name__})") from None
    if not content.strip():
        raise argparse.ArgumentTypeError(f"{path} is empty")
    return path


URI_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def model_location(text) -> Path | str:
    """--model_dir: a storage URI stays a string (Path would fold its `//`), anything else is a local Path."""
    if isinstance(text, Path):
        return text
    return str(text) if URI_SCHEME_RE.match(str(text)) else Path(text)


def parse_batch_sizes(text) -> tuple[int, ...]:
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [part for part in str(text).split(",") if part.strip()]
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError("batch sizes must be positive")
    return sizes


def parse_names(text) -> tuple[str, ...]:
    """Comma-separated model names (--served_model_name), each a valid model name."""
    parts = list(text) if isinstance(text, (list, tuple)) else [p.strip() for p in str(text).split(",") if p.strip()]
    bad = [name for name in parts if not MODEL_NAME_RE.match(name)]
    if bad:
        raise argparse.ArgumentTypeError(f"model names are [A-Za-z0-9_.-]+, got {bad}")
    return tuple(dict.fromkeys(parts))


def setting(default=dataclasses.MISSING, help: str = "", *, choices: tuple | None = None, parse=None,
            env: str | None = None, metavar: str | None = None):
    """One field of a settings group: its `--<name>` option is generated from this."""
    if env and env not in help:
        raise ValueError(f"the help text must say how ${env} sets the default: {help!r}")
    metadata = {"help": help, "choices": choices, "parse": parse, "env": env, "metavar": metavar}
    return field(default=default, metadata=metadata)


# ------------------------------------------------------------------------------------------------------------------
# the groups


@dataclass(frozen=True)
class ModelConfig:
    """model"""

    model_dir: Path = setting(Path("/mnt/models"), "Hugging Face checkpoint: a local directory, or a storage URI "
                                                   "(s3://, gs://, https://<account>.blob.core.windows.net/..., "
                                                   "an https:// .tar.gz or .zip, hf://) that KServe's storage "
                                                   "library downloads into --model_cache_dir at start",
                              parse=model_location)
    model_cache_dir: Path | None = setting(None, "Writable folder a --model_dir URI is downloaded to (default: "
                                                 "$HFSERVE_CACHE_DIR/models, else the system temp folder); a "
                                                 "complete earlier download of the same URI is reused; never the "
                                                 "model mount", env="HFSERVE_CACHE_DIR")
    model_init_timeout_s: float = setting(600.0, "Under MODEL_INIT_MODE=async (KServe's modelcars), how long to "
                                                 "wait for config.json in --model_dir before giving up",
                                          env="MODEL_INIT_MODE")
    task: str | None = setting(None, "Task to serve; inferred from config.architectures when absent",
                               choices=TASK_CHOICES)
    trust_remote_code: bool = setting(False, "Allow code shipped inside the checkpoint to run (off: only "
                                             "transformers' own code)")

    def validate(self) -> None:
        if self.task is not None:
            check_choice("--task", self.task, TASK_CHOICES)


@dataclass(frozen=True)
class ExecutionConfig:
    """model execution"""

    dtype: str = setting("auto", "Weights dtype; auto is float16 on a GPU and float32 on the CPU",
                         choices=DTYPE_CHOICES)
    device: str = setting("auto", "Where the model runs; auto: a GPU when there is one", choices=DEVICE_CHOICES)
    engine: str = setting("torch", "Encoder tasks: run the model with torch, or with ONNX Runtime (graph shipped as "
                                   "onnx/model.onnx in the model directory, else exported at load into "
                                   "--onnx_cache_dir)", choices=ENGINE_CHOICES)
    quantize: str = setting("none", "With --engine onnx on the CPU: int8 dynamic quantization of the weight "
                                    "matrices", choices=QUANTIZE_CHOICES)
    onnx_cache_dir: Path | None = setting(None, "Writable folder for exported and quantized graphs (default: "
                                                "$HFSERVE_CACHE_DIR/onnx, else the system temp folder); never the "
                                                "model directory", env="HFSERVE_CACHE_DIR")
    allow_pickle_weights: bool = setting(False, "Load pytorch_model.bin / .pt / .ckpt weights where a folder has no "
                                                ".safetensors (off: refused at start, naming the file; loading pickle "
                                                "runs an unpickler over the model directory)")

    def validate(self) -> None:
        check_choice("--dtype", self.dtype, DTYPE_CHOICES)
        check_device(self.device)
        check_choice("--engine", self.engine, ENGINE_CHOICES)
        check_choice("--quantize", self.quantize, QUANTIZE_CHOICES)
        if self.quantize != "none" and self.engine != "onnx":
            raise ConfigError(f"--quantize {self.quantize} needs --engine onnx")
        check_quantize_placement(self.quantize, on_gpu=self.device == "cuda")


@dataclass(frozen=True)
class TokenizerConfig:
    """tokenizer"""

    max_length: int | None = setting(None, "Truncate inputs to this many tokens (default: the model's maximum)",
                                     parse=positive_int)
    disable_lower_case: bool = setting(False, "Do not lower-case inputs")
    disable_special_tokens: bool = setting(False, "Do not add special tokens such as [CLS] and [SEP]")

    def options(self, trust_remote_code: bool = False) -> TokenizerOptions:
        from .tasks.tokenization import TokenizerOptions

        return TokenizerOptions(max_length=self.max_length, lower_case=not self.disable_lower_case,
                                add_special_tokens=not self.disable_special_tokens,
                                trust_remote_code=trust_remote_code)


@dataclass(frozen=True)
class BatchingConfig:
    """batching (encoder tasks)

    Runtime 1's dynamic batcher, and Triton's batches with model.py's passes inside them.
    """

    max_batch_size: int = setting(32, "Most texts in one forward pass (Triton: its max_batch_size)",
                                  parse=positive_int)
    max_batch_tokens: int | None = setting(None, "Most padded tokens (rows x longest text) in one forward pass; "
                                                 "queued texts are grouped by length under this bound (default: "
                                                 "2048 on CPU, 16384 on GPU)", parse=positive_int)

    def validate(self) -> None:
        check_positive("--max_batch_size", self.max_batch_size)
        if self.max_batch_tokens is not None:
            check_positive("--max_batch_tokens", self.max_batch_tokens)


@dataclass(frozen=True)
class BatchWaitConfig:
    """batching in this process (runtime 1)"""

    max_batch_delay_ms: float = setting(0.0, "How long a batch that is not full may wait for more texts; 0 batches "
                                             "only what queued while the previous forward pass ran")


@dataclass(frozen=True)
class GenerationConfig:
    """generation (text_generation, text2text_generation; security review H3)

    One generation runs at a time; these bound what one request may cost and how many may wait.
    """

    max_input_tokens: int = setting(4096, "Most tokens in one prompt, after the request's own 'truncate' (an error "
                                          "naming the limit above it)", parse=positive_int)
    max_total_tokens: int = setting(8192, "Most tokens one request may cost: prompt plus max_new_tokens, summed "
                                          "over its prompts (an error naming the budget above it)",
                                    parse=positive_int)
    generation_timeout_s: float = setting(300.0, "Wall-clock limit of one generation request, waiting for the model "
                                                 "included: past it the generation stops and the request gets HTTP "
                                                 "503 / gRPC UNAVAILABLE saying so (300: Knative's default request "
                                                 "timeout)", parse=positive_float)
    max_queued_generations: int = setting(8, "Generation requests that may wait while one generates (HTTP and "
                                             "gRPC together); beyond, HTTP 429 / gRPC RESOURCE_EXHAUSTED at once",
                                          parse=non_negative_int)

    def limits(self):
        from .tasks.generation import GenerationLimits

        return GenerationLimits(max_input_tokens=self.max_input_tokens, max_total_tokens=self.max_total_tokens,
                                timeout_s=self.generation_timeout_s, max_queued=self.max_queued_generations)


@dataclass(frozen=True)
class ServingConfig:
    """serving (HTTP and gRPC front end)"""

    max_request_items: int = setting(64, "Most texts in one request", parse=positive_int)
    max_request_bytes: int = setting(1 << 20, "Largest request body accepted (HTTP 413 above it), and the largest "
                                              "gRPC message received (RESOURCE_EXHAUSTED above it; kserve's "
                                              "--grpc_max_receive_message_length is not used). gRPC responses are "
                                              "capped by --grpc_max_send_message_length (8 MiB)",
                                     parse=positive_int)
    max_concurrent_requests: int = setting(512, "Most inference requests in flight, HTTP and gRPC together (a POST "
                                                "counts once its body has arrived); above it, HTTP 429 with "
                                                "Retry-After, gRPC RESOURCE_EXHAUSTED, at once", parse=positive_int)
    # security review M2 (serving/slow_clients.py): slow clients hold a connection for a bounded time, never a slot
    request_read_timeout_s: float = setting(30.0, "A request (headers and body) must arrive whole within this long of "
                                                  "its first byte, and a new connection must send its first request "
                                                  "within this long; past it HTTP 408 and the connection is closed",
                                            parse=positive_float)
    response_write_timeout_s: float = setting(30.0, "A client that reads nothing of its response for this long is "
                                                    "disconnected (its request's slot is released)",
                                              parse=positive_float)
    auto_truncate: bool = setting(True, "Cut inputs longer than the model's limit to the limit; false: refuse them "
                                        "with an error that names the limit. Requests may override it with their "
                                        "own 'truncate'", parse=parse_bool, metavar="{true,false}")
    return_probabilities: bool = setting(False, "sequence_classification: add every label's probability to each "
                                                "result")
    max_tokenize_tokens: int = setting(16384, "Most tokens /tokenize returns for one request (HTTP 413 above it, "
                                              "found before the whole body is tokenized)", parse=positive_int)
    # security review H1/H2/H4: bounded work per request, and none of it on the event loop
    max_decode_tokens: int = setting(16384, "Most token ids /decode takes in one request (HTTP 413 above it)",
                                     parse=positive_int)
    max_masks: int = setting(8, "fill_mask: most mask tokens in one text (an error naming the cap above it)",
                             parse=positive_int)
    max_fill_mask_candidates: int = setting(4096, "fill_mask: most candidates one request returns, masks x top_k "
                                                  "over its texts (an error naming the cap above it)",
                                            parse=positive_int)
    tokenizer_workers: int = setting(2, "Threads that tokenize and post-process requests, off the event loop, so "
                                        "health probes and other requests are answered during a large one",
                                     parse=positive_int)
    default_prompt_name: str | None = setting(None, "text_embedding: the checkpoint prompt (config_sentence_"
                                                    "transformers.json) put before every input a request does not "
                                                    "choose one for; default: the checkpoint's default_prompt_name")
    default_prompt: str | None = setting(None, "text_embedding: a prompt text put before every input a request does "
                                               "not choose one for (wins over --default_prompt_name)")
    served_model_name: tuple[str, ...] = setting((), "Extra names the model answers to, comma-separated (OpenAI "
                                                     "'model', V1/V2 paths, Cohere 'model'); listed by "
                                                     "/openai/v1/models and /v1/models", parse=parse_names,
                                                 metavar="NAME[,NAME...]")
    auto_split_client_batches: bool = setting(False, "Above --max_request_items texts, split the request into "
                                                     "batches of --max_request_items run one after another, instead "
                                                     "of refusing it (up to --max_split_request_items texts and the "
                                                     "body limit)", parse=parse_bool, metavar="{true,false}")
    max_split_request_items: int = setting(4096, "With --auto_split_client_batches: most texts in one request",
                                           parse=positive_int)
    request_timing_logs: bool = setting(False, "Log kserve's per-request timing lines (wall/cpu time, "
                                               "pre/post-processing latency). Off by default: they cost a large "
                                               "share of the serving path's CPU")
    enable_repository_routes: bool = setting(False, "Expose kserve's model-repository API (/v2/repository/..., "
                                                    "gRPC RepositoryModelLoad/Unload) on the serving ports. "
                                                    "Unauthenticated: anyone who reaches the port can unload the "
                                                    "model. Off by default")
    # security review M5 (serving/api_key.py): the key itself is never logged, echoed or shown as a default
    api_key_file: Path | None = setting(None, "File holding the API key every request must send as 'Authorization: "
                                              "Bearer <key>' (probes exempt; /metrics too unless "
                                              "--api_key_covers_metrics); preferred to --api_key, whose value shows "
                                              "in the process list", parse=key_file)
    api_key: str | None = setting(None, "The API key itself (default: $HFSERVE_API_KEY); prefer --api_key_file",
                                  env="HFSERVE_API_KEY", metavar="KEY")
    api_key_covers_metrics: bool = setting(False, "With an API key: /metrics needs it too (default: exempt, so a "
                                                  "scraper needs no key; it carries counts and latencies only)")
    otlp_traces_endpoint: str | None = setting(None, "OTLP/HTTP receiver of OpenTelemetry traces, e.g. "
                                                     "http://otel-collector:4318/v1/traces (default: "
                                                     "$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; unset: no tracing)",
                                               env="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", metavar="URL")


@dataclass(frozen=True)
class ContainerConfig:
    """container (every container of both runtimes)"""

    bind_address: str = setting("0.0.0.0", "Address the servers listen on")
    grpc_bind_address: str | None = setting(None, "Address the gRPC server listens on (default: --bind_address); "
                                                  "127.0.0.1 keeps a port the InferenceService does not route off "
                                                  "the pod network")
    drain_delay_s: float | None = setting(None, "On SIGTERM: readiness turns false at once and serving goes on for "
                                                "at least this long (the time Kubernetes needs to take the pod out "
                                                "of its endpoints) before in-flight requests finish and the server "
                                                "stops. Default: 5, or 0 under Knative (K_SERVICE set), whose "
                                                "queue-proxy drains before the container gets SIGTERM",
                                          env="K_SERVICE")


@dataclass(frozen=True)
class PredictorConfig:
    """predictor (Triton)"""

    triton_model_name: str | None = setting(None, "Model name in Triton (default: --model_name)")
    predictor_timeout_s: float = setting(30.0, "Deadline of one inference call to Triton")
    model_dir_wait_s: float = setting(600.0, "How long to wait for the tokenizer files in --model_dir (the Triton "
                                             "container exports them at start-up)")
    triton_metrics_url: str = setting("http://127.0.0.1:8002/metrics", "Triton's metrics page, scraped on loopback "
                                      "every 2 s and re-exported on this server's /metrics (docs/observability.md)"
                                      "; empty: not bridged")


@dataclass(frozen=True)
class TritonBatchingConfig:
    """Triton's dynamic batcher and instances"""

    preferred_batch_sizes: tuple[int, ...] = setting((8, 16, 32), "Batch sizes Triton's dynamic batcher aims for "
                                                                  "(comma-separated; those above --max_batch_size "
                                                                  "are dropped)", parse=parse_batch_sizes)
    max_queue_delay_us: int = setting(DEFAULT_MAX_QUEUE_DELAY_US, "How long Triton's dynamic batcher holds a "
                                                                  "request for company, in microseconds",
                                      parse=non_negative_int)
    instance_count: int = setting(1, "Model instances Triton runs", parse=positive_int)

    def validate(self) -> None:
        check_positive("--instance_count", self.instance_count)
        if self.max_queue_delay_us < 0:
            raise ConfigError("--max_queue_delay_us must not be negative")
        parse_batch_sizes(self.preferred_batch_sizes)


@dataclass(frozen=True)
class RepositoryConfig:
    """Triton model repository"""

    model_name: str = setting(help="Model name in Triton and in the repository")
    repository_dir: Path = setting(Path(tempfile.gettempdir()) / "hfserve-triton-repo",
                                   "Folder the model repository is written to (its <model_name> folder is replaced)")
    onnx_backend: str = setting("auto", "With --engine onnx: Triton's onnxruntime backend (native), or the Python "
                                        "backend running ONNX Runtime; auto: native when the Triton install has "
                                        "backends/onnxruntime", choices=ONNX_BACKEND_CHOICES)
    model: ModelConfig = field(default_factory=ModelConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    triton_batching: TritonBatchingConfig = field(default_factory=TritonBatchingConfig)

    def validate(self) -> None:
        if not MODEL_NAME_RE.match(self.model_name) or self.model_name.startswith("."):  # not "." or ".."
            raise ConfigError(f"model name {self.model_name!r} is not a valid Triton model name ([A-Za-z0-9_.-]+, "
                              "not starting with '.')")
        check_choice("--onnx_backend", self.onnx_backend, ONNX_BACKEND_CHOICES)
        for group in (self.model, self.execution, self.batching, self.triton_batching):
            group.validate()

    def to_json(self) -> str:
        return json.dumps(to_dict(self))

    @classmethod
    def from_json(cls, text: str) -> "RepositoryConfig":
        return from_dict(cls, json.loads(text))


@dataclass(frozen=True)
class LauncherConfig:
    """tritonserver"""

    tokenizer_export_dir: Path | None = setting(None, "Copy the tokenizer and config files there (for the "
                                                      "transformer container)")
    http_port: int = setting(8000, "Triton's HTTP port")
    grpc_port: int = setting(8001, "Triton's gRPC port")
    metrics_port: int = setting(8002, "Triton's metrics port")
    exit_timeout_s: int = setting(20, "Longest SIGTERM drain; keep it under the pod's termination grace period")
    drain_quiet_s: float = setting(1.0, "On SIGTERM, keep serving until no request has arrived for this long (the "
                                        "transformer beside us drains its own in-flight requests through Triton), "
                                        "then unload and stop")
    tritonserver: str | None = setting(None, "tritonserver binary (default: on PATH, else the nvidia-pytriton "
                                             "wheel's copy)")
    log_verbose: int = setting(0, "Triton's --log-verbose level")
    triton_traces_endpoint: str | None = setting(None, "OTLP/HTTP receiver of Triton's own OpenTelemetry traces "
                                                       "(every request, timestamps); Triton continues the "
                                                       "transformer's traceparent (docs/observability.md). Unset: "
                                                       "no Triton traces", metavar="URL")
    allow_remote_triton: bool = setting(False, "Let Triton listen on a --bind_address other than loopback (the "
                                               "launcher's default is 127.0.0.1: Triton's admin APIs and its "
                                               "metrics are meant for the pod only)")


# The groups of each command line, in --help order (kserve's own options come first in the two kserve servers).
HUGGINGFACE_GROUPS = (ModelConfig, ExecutionConfig, TokenizerConfig, BatchingConfig, BatchWaitConfig,
                      GenerationConfig, ServingConfig, ContainerConfig)
TRANSFORMER_GROUPS = (ModelConfig, TokenizerConfig, ServingConfig, ContainerConfig, PredictorConfig)
LAUNCHER_GROUPS = (RepositoryConfig, ContainerConfig, LauncherConfig)
# Options these command lines require although their fields have a default (runtime 1 reads /mnt/models; the
# launcher writes its repository to a temporary folder unless told).
LAUNCHER_REQUIRED = ("model_dir",)
BUILDER_REQUIRED = ("model_dir", "repository_dir")
ALL_GROUPS = (ModelConfig, ExecutionConfig, TokenizerConfig, BatchingConfig, BatchWaitConfig, GenerationConfig,
              ServingConfig,
              ContainerConfig, PredictorConfig, TritonBatchingConfig, RepositoryConfig, LauncherConfig)


# ------------------------------------------------------------------------------------------------------------------
# rules written once; the engines call these when `auto` becomes a real device


def check_choice(flag: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {flag.lstrip('-')} {value!r}; choose one of {', '.join(choices)}")


def check_device(device: str) -> None:
    check_choice("--device", device, DEVICE_CHOICES)


def check_positive(flag: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{flag} must be at least 1")


def check_quantize_placement(quantize: str, on_gpu: bool) -> None:
    """int8 is a CPU option (ONNX Runtime's dynamic int8 kernels run on the CPU only)."""
    if quantize == "int8" and on_gpu:
        raise ConfigError("--quantize int8 is a CPU option (dynamic int8 kernels); on a GPU serve float32 or float16")


# ------------------------------------------------------------------------------------------------------------------
# the generator


def is_group(value) -> bool:
    return isinstance(value, type) and dataclasses.is_dataclass(value)


def type_hints(group: type) -> dict:
    return typing.get_type_hints(group)


def _scalar_type(hint):
    """The value type of a field annotation: `int | None` is int."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def options(group: type) -> list[dataclasses.Field]:
    """The option fields of a group, those of its nested groups included."""
    hints = type_hints(group)
    found = []
    for f in dataclasses.fields(group):
        if is_group(hints[f.name]):
            found += options(hints[f.name])
        else:
            found.append(f)
    return found


def flag(f: dataclasses.Field) -> str:
    return "--" + f.name


def _add_field(target, f: dataclasses.Field, hint, required: bool) -> None:
    meta = f.metadata
    kind = _scalar_type(hint)
    kwargs: dict = {"help": meta["help"], "dest": f.name}
    has_default = f.default is not dataclasses.MISSING
    if kind is bool and meta["parse"] is None:
        if not has_default or f.default is not False:
            raise TypeError(f"{f.name}: an on/off flag must default to False (use parse=parse_bool otherwise)")
        target.add_argument(flag(f), action="store_true", **kwargs)
        return
    kwargs["type"] = meta["parse"] or kind
    if meta["choices"]:
        kwargs["choices"] = meta["choices"]
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if required or not has_default:
        kwargs.update(required=True, default=argparse.SUPPRESS)
    else:
        kwargs["default"] = f.default
    target.add_argument(flag(f), **kwargs)


def add_to_parser(parser: argparse.ArgumentParser, *groups: type, required: tuple[str, ...] = ()) -> None:
    """Add each group's options to `parser`, in an argument group titled by the group's docstring."""
    for group in groups:
        hints = type_hints(group)
        target = parser.add_argument_group(group.__doc__.strip().splitlines()[0])
        nested = []
        for f in dataclasses.fields(group):
            if is_group(hints[f.name]):
                nested.append(hints[f.name])
            else:
                _add_field(target, f, hints[f.name], f.name in required)
        add_to_parser(parser, *nested, required=required)


def add_field(parser, group: type, name: str, *, default=dataclasses.MISSING, required: bool = False) -> None:
    """One declared option on its own (a dev tool that passes it on), optionally with a default of its own."""
    f = next(f for f in dataclasses.fields(group) if f.name == name)
    if default is not dataclasses.MISSING:
        f = dataclasses.field(default=default, metadata=f.metadata)
        f.name = name
    _add_field(parser, f, type_hints(group)[name], required)


def from_namespace(group: type, args: argparse.Namespace):
    """The group (nested groups included) as parsed into `args`."""
    hints = type_hints(group)
    values = {}
    for f in dataclasses.fields(group):
        values[f.name] = from_namespace(hints[f.name], args) if is_group(hints[f.name]) else getattr(args, f.name)
    return group(**values)


def to_dict(config) -> dict:
    """JSON-ready: paths as strings, tuples as lists."""

    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return value

    return {f.name: to_dict(getattr(config, f.name)) if dataclasses.is_dataclass(getattr(config, f.name))
            else plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def from_dict(group: type, data: dict):
    """The inverse of to_dict; each value goes through its field's parser, and unknown keys are refused."""
    hints = type_hints(group)
    names = {f.name for f in dataclasses.fields(group)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{group.__name__}: unknown settings {sorted(unknown)}")
    values = {}
    for f in dataclasses.fields(group):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if is_group(hint):
            values[f.name] = from_dict(hint, value)
        elif value is None:
            values[f.name] = None
        else:
            kind = _scalar_type(hint)
            parse = f.metadata.get("parse") or (parse_bool if kind is bool else kind)
            try:
                values[f.name] = parse(value)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
                raise ConfigError(f"{flag(f)}: {exc}") from None
    return group(**values)


def to_argv(config, only_changed: bool = True) -> list[str]:
    """Options that give `config` to a command line generated from its groups (defaults left out)."""
    argv: list[str] = []
    hints = type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_group(hints[f.name]):
            argv += to_argv(value, only_changed)
            continue
        if only_changed and f.default is not dataclasses.MISSING and value == f.default:
            continue
        if value is None:
            continue
        if _scalar_type(hints[f.name]) is bool and f.metadata["parse"] is None:
            argv += [flag(f)] if value else []
        elif isinstance(value, tuple):
            argv += [flag(f), ",".join(str(v) for v in value)]
        else:
            argv += [flag(f), str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def validate(*configs) -> None:
    for config in configs:
        check = getattr(config, "validate", None)
        if check is not None:
            check()


# ------------------------------------------------------------------------------------------------------------------
# what a model is built from, once its task is known


@dataclass(frozen=True)
class ModelSettings:
    """The settings every encoder or generative model of either runtime is built from."""

    model_name: str
    model_dir: Path
    task: Task
    tokenizer: TokenizerOptions = field(default_factory=lambda: TokenizerConfig().options())
    return_probabilities: bool = False
    max_request_items: int = 64
    auto_truncate: bool = True  # cut over-long inputs to the model's limit unless a request says otherwise
    max_tokenize_tokens: int = 16384  # /tokenize: tokens returned per request
    max_decode_tokens: int = 16384  # /decode: token ids taken per request
    max_masks: int = 8  # fill_mask: masks per text
    max_fill_mask_candidates: int = 4096  # fill_mask: masks x top_k per request
    tokenizer_workers: int = 2  # threads for tokenization and post-processing (core/encoder_service.py)
    default_prompt_name: str | None = None  # text_embedding (tasks/prompts.py)
    default_prompt: str | None = None
    served_model_names: tuple[str, ...] = ()  # aliases of model_name (--served_model_name)
    split_request_items: int | None = None  # --auto_split_client_batches: most texts a split request may hold
