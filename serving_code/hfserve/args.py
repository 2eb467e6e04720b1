"""Command-line arguments, declared once. Names follow KServe's huggingfaceserver so users can switch.

kserve's own parser (--model_name, --http_port, --grpc_port, --workers, --predictor_host, ...) is the parent;
these helpers add ours by group, and `model_settings` turns parsed arguments into ModelSettings.
"""

import argparse
from pathlib import Path

from kserve import model_server

from .serving.controls import http_controls
from .serving.settings import ModelSettings
from .tasks import Task
from .tasks.detect import infer_task
from .tasks.options import DEVICE_CHOICES, DTYPE_CHOICES
from .tasks.tokenization import TokenizerOptions


def new_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description, parents=[model_server.parser], allow_abbrev=False,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model_dir", default="/mnt/models", help="Local Hugging Face checkpoint directory")
    group.add_argument("--task", choices=[t.value for t in Task], default=None,
                       help="Task to serve; inferred from config.architectures when absent")
    group.add_argument("--return_probabilities", action="store_true",
                       help="sequence_classification: add every label's probability to each result")
    group.add_argument("--trust_remote_code", action="store_true",
                       help="Allow code shipped inside the checkpoint to run (off: only transformers' own code)")


def add_execution_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model execution")
    group.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                       help="Weights dtype; auto is float16 on a GPU and float32 on the CPU")
    group.add_argument("--device", choices=DEVICE_CHOICES, default="auto")


def add_tokenizer_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--max_length", type=int, default=None,
                       help="Truncate inputs to this many tokens (default: the model's maximum)")
    group.add_argument("--disable_lower_case", action="store_true", help="Do not lower-case inputs")
    group.add_argument("--disable_special_tokens", action="store_true",
                       help="Do not add special tokens such as [CLS] and [SEP]")


def add_batching_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dynamic batching (encoder tasks)")
    group.add_argument("--max_batch_size", type=_positive_int, default=32,
                       help="Most texts in one forward pass")
    group.add_argument("--max_batch_delay_ms", type=float, default=0.0,
                       help="How long a batch that is not full may wait for more texts; 0 batches only what "
                            "queued while the previous forward pass ran")
    group.add_argument("--max_batch_tokens", type=_positive_int, default=None,
                       help="Most padded tokens (rows x longest text) in one forward pass; queued texts are grouped "
                            "by length under this bound (default: 2048 on CPU, 16384 on GPU)")


def add_serving_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("serving")
    group.add_argument("--bind_address", default="0.0.0.0", help="Address the HTTP and gRPC servers listen on")
    group.add_argument("--max_request_items", type=_positive_int, default=64, help="Most texts in one request")
    group.add_argument("--max_request_bytes", type=_positive_int, default=1 << 20,
                       help="Largest request body accepted (HTTP 413 above it)")
    group.add_argument("--max_concurrent_requests", type=_positive_int, default=512,
                       help="Most inference requests in flight; above it, HTTP 429 with Retry-After at once")
    group.add_argument("--auto_truncate", type=_bool, default=True, metavar="{true,false}",
                       help="Cut inputs longer than the model's limit to the limit; false: refuse them with an error "
                            "that names the limit. Requests may override it with their own 'truncate'")
    group.add_argument("--request_timing_logs", action="store_true",
                       help="Log kserve's per-request timing lines (wall/cpu time, pre/post-processing latency). "
                            "Off by default: they cost a large share of the serving path's CPU")
    group.add_argument("--drain_delay_s", type=float, default=None,
                       help="On SIGTERM: readiness turns false at once, the server keeps serving for this long (the "
                            "time Kubernetes needs to take the pod out of its endpoints), then stops accepting while "
                            "requests in flight finish. Default: 5, or 0 under Knative (K_SERVICE set), whose "
                            "queue-proxy drains before the container gets SIGTERM")
    group.add_argument("--enable_repository_routes", action="store_true",
                       help="Expose kserve's model-repository API (/v2/repository/..., gRPC RepositoryModelLoad/"
                            "Unload) on the serving ports. Unauthenticated: anyone who reaches the port can unload "
                            "the model. Off by default")


def model_settings(args: argparse.Namespace) -> ModelSettings:
    model_dir = Path(args.model_dir)
    return ModelSettings(
        model_name=args.model_name,
        model_dir=model_dir,
        task=infer_task(model_dir, args.task),
        tokenizer=TokenizerOptions(
            max_length=args.max_length,
            lower_case=not args.disable_lower_case,
            add_special_tokens=not args.disable_special_tokens,
            trust_remote_code=args.trust_remote_code,
        ),
        return_probabilities=args.return_probabilities,
        max_request_items=args.max_request_items,
        auto_truncate=args.auto_truncate,
    )


def server_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for HFModelServer."""
    return dict(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
                bind_address=args.bind_address, max_request_bytes=args.max_request_bytes,
                request_timing_logs=args.request_timing_logs,
                middlewares=http_controls(args.max_concurrent_requests), drain_delay_s=args.drain_delay_s,
                enable_repository_routes=args.enable_repository_routes)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
