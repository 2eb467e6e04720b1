"""`python -m hfserve.huggingface`: serve a Hugging Face checkpoint in-process (the kserve-huggingface runtime)."""

import logging
import sys

from .. import args as cli
from ..serving.openai.routes import openai_router
from ..serving.server import HFModelServer
from ..serving.tei.rerank import document_rerank_router
from ..serving.tei.routes import tei_router_factory
from ..tasks.detect import TaskDetectionError
from .encoder_model import InProcessEncoderModel
from .generative_model import GenerativeModel

logger = logging.getLogger("hfserve")


def build_parser():
    parser = cli.new_parser("Serve a Hugging Face checkpoint with transformers + torch inside this process")
    for add in (cli.add_model_args, cli.add_execution_args, cli.add_tokenizer_args, cli.add_batching_args,
                cli.add_serving_args):
        add(parser)
    return parser


def build_model(args):
    settings = cli.model_settings(args)
    if settings.task.is_generative:
        return GenerativeModel(settings, dtype=args.dtype, device=args.device)
    return InProcessEncoderModel(settings, dtype=args.dtype, device=args.device,
                                 max_batch_size=args.max_batch_size, max_batch_delay_ms=args.max_batch_delay_ms,
                                 max_batch_tokens=args.max_batch_tokens)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.workers != 1:
        sys.exit("hfserve: --workers must be 1 (the model and its batcher live in one process); scale with replicas")
    try:
        model = build_model(args)
        model.load()
    except (TaskDetectionError, ValueError, OSError) as error:
        sys.exit(f"hfserve: cannot serve {args.model_dir}: {error}")
    logger.info("serving %s as %s from %s", model.name, model.settings.task, args.model_dir)
    HFModelServer(router_factories=(openai_router, tei_router_factory(args.max_concurrent_requests),
                                   document_rerank_router), **cli.server_options(args)).start([model])


if __name__ == "__main__":
    main()
