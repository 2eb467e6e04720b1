"""`python -m hfserve.huggingface`: serve a Hugging Face checkpoint in-process (the kserve-huggingface runtime)."""

import logging
import sys

from .. import args as cli
from .. import storage
from ..core.encoder_service import EncoderService
from ..engine.loading import check_weights
from ..serving import tracing
from ..serving.kserve_adapter import KServeEncoderModel
from ..serving.protocol_routers import protocol_routers
from ..serving.server import HFModelServer
from ..tasks.detect import TaskDetectionError
from .generative_model import GenerativeModel
from .in_process_backend import InProcessBackend

logger = logging.getLogger("hfserve")


def build_parser():
    return cli.huggingface_parser()


def build_model(args):
    check_weights(args.model_dir, args.allow_pickle_weights)  # before any loader: security review L4
    settings = cli.model_settings(args)
    if settings.task.is_generative:
        if args.engine != "torch" or args.quantize != "none":
            raise ValueError("--engine onnx and --quantize serve encoder tasks; generative tasks run with torch")
        return GenerativeModel(settings, dtype=args.dtype, device=args.device,
                               limits=cli.config.from_namespace(cli.config.GenerationConfig, args).limits())
    backend = InProcessBackend(settings, dtype=args.dtype, device=args.device, max_batch_size=args.max_batch_size,
                               max_batch_delay_ms=args.max_batch_delay_ms, max_batch_tokens=args.max_batch_tokens,
                               engine=args.engine, quantize=args.quantize, onnx_cache_dir=args.onnx_cache_dir)
    return KServeEncoderModel(EncoderService(settings, backend))


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(build_parser(), cli.config.HUGGINGFACE_GROUPS, argv)
    if args.workers != 1:
        sys.exit("hfserve: --workers must be 1 (the model and its batcher live in one process); scale with replicas")
    try:
        args.model_dir = storage.prepare_model_dir(args.model_dir, args.model_cache_dir, args.model_init_timeout_s)
    except storage.StorageError as error:
        sys.exit(f"hfserve: {error}")
    try:
        model = build_model(args)
        model.load()
    except (TaskDetectionError, ValueError, OSError) as error:
        sys.exit(f"hfserve: cannot serve {args.model_dir}: {error}")
    logger.info("serving %s as %s from %s", model.name, model.settings.task, args.model_dir)
    tracing.configure(args.otlp_traces_endpoint, "kserve-huggingface")
    HFModelServer(router_factories=protocol_routers(args.max_concurrent_requests),
                  **cli.server_options(args)).start([model])


if __name__ == "__main__":
    main()
