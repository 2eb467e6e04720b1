"""`python -m hfserve.transformer`: the transformer container of the kserve-huggingface-triton runtime.

Tokenizes and post-processes with the same code as the kserve-huggingface runtime and runs the model on Triton
(`--predictor_host`, Triton's gRPC address). While Triton is unavailable, requests get HTTP 503 at once and
/v2/health/ready is false; /v2/health/live stays true.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from .. import args as cli
from .. import storage
from ..core.encoder_service import EncoderService
from ..serving import tracing
from ..serving.kserve_adapter import KServeEncoderModel
from ..serving.metrics import bridge_triton_metrics
from ..serving.protocol_routers import protocol_routers
from ..serving.server import HFModelServer
from ..tasks.detect import TaskDetectionError
from .triton_backend import TritonBackend

logger = logging.getLogger("hfserve")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model",
                   "vocab.json")


def build_parser():
    return cli.transformer_parser()


def wait_for_model_dir(model_dir: Path, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        if (model_dir / "config.json").is_file() and any((model_dir / f).is_file() for f in TOKENIZER_FILES):
            return True
        if time.monotonic() >= deadline:
            return False
        if not announced:
            logger.info("waiting up to %.0f s for config.json and tokenizer files in %s", wait_s, model_dir)
            announced = True
        time.sleep(0.2)


def build_model(args) -> KServeEncoderModel:
    settings = cli.model_settings(args)
    if settings.task.is_generative:
        raise ValueError(f"task {settings.task.value!r} is generative; the kserve-huggingface-triton runtime serves "
                         "encoder tasks only: serve this model with the kserve-huggingface runtime")
    backend = TritonBackend(args.predictor_host, args.triton_model_name or settings.model_name, args.predictor_timeout_s)
    return KServeEncoderModel(EncoderService(settings, backend))


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(build_parser(), cli.config.TRANSFORMER_GROUPS, argv)
    try:
        args.model_dir = storage.prepare_model_dir(args.model_dir, args.model_cache_dir, args.model_init_timeout_s)
    except storage.StorageError as error:
        sys.exit(f"hfserve: {error}")
    if not wait_for_model_dir(Path(args.model_dir), args.model_dir_wait_s):
        sys.exit(f"hfserve: {args.model_dir} has no config.json and tokenizer files after {args.model_dir_wait_s:.0f} s")
    try:
        model = build_model(args)
        model.load()
    except (TaskDetectionError, ValueError, OSError) as error:
        sys.exit(f"hfserve: cannot serve {args.model_dir}: {error}")
    logger.info("serving %s as %s from %s, model on triton %s (model %s)", model.name, model.settings.task,
                args.model_dir, args.predictor_host, model.service.backend.client.model_name)
    bridge_triton_metrics(args.triton_metrics_url)
    tracing.configure(args.otlp_traces_endpoint, "kserve-huggingface-triton")
    HFModelServer(router_factories=protocol_routers(args.max_concurrent_requests),
                  **cli.server_options(args)).start([model])


if __name__ == "__main__":
    main()
