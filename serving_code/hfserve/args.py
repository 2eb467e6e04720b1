"""The command lines of the two kserve servers (runtime 1 and the transformer), generated from hfserve.config.

Names follow KServe's huggingfaceserver so users can switch. kserve's own parser (--model_name, --http_port,
--grpc_port, --workers, --predictor_host, ...) is the parent; our options come from the groups that
hfserve.config declares, and `model_settings` / `server_options` turn parsed arguments into what the model and the
server are built from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kserve import model_server

from . import config
from .config import ModelSettings
from .tasks.detect import infer_task


def new_parser(description: str, groups: tuple[type, ...]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, parents=[model_server.parser], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    config.add_to_parser(parser, *groups)
    return parser


def huggingface_parser() -> argparse.ArgumentParser:
    return new_parser("Serve a Hugging Face checkpoint with transformers + torch inside this process",
                      config.HUGGINGFACE_GROUPS)


def transformer_parser() -> argparse.ArgumentParser:
    parser = new_parser("Tokenize and post-process here, run the model on Triton over gRPC", config.TRANSFORMER_GROUPS)
    parser.set_defaults(predictor_host="127.0.0.1:8001")  # kserve's --predictor_host: Triton's gRPC address
    return parser


def parse(parser: argparse.ArgumentParser, groups: tuple[type, ...], argv: list[str] | None = None):
    """Parse, then apply every group's cross-field rules; a broken rule is a usage error (exit status 2)."""
    args = parser.parse_args(argv)
    try:
        config.validate(*(config.from_namespace(group, args) for group in groups))
    except config.ConfigError as exc:
        parser.error(str(exc))
    return args


def model_settings(args: argparse.Namespace) -> ModelSettings:
    model = config.from_namespace(config.ModelConfig, args)
    serving = config.from_namespace(config.ServingConfig, args)
    tokenizer = config.from_namespace(config.TokenizerConfig, args)
    return ModelSettings(
        model_name=args.model_name,
        model_dir=Path(model.model_dir),
        task=infer_task(Path(model.model_dir), model.task),
        tokenizer=tokenizer.options(trust_remote_code=model.trust_remote_code),
        return_probabilities=serving.return_probabilities,
        max_request_items=serving.max_request_items,
        auto_truncate=serving.auto_truncate,
        max_tokenize_tokens=serving.max_tokenize_tokens,
        max_decode_tokens=serving.max_decode_tokens,
        max_masks=serving.max_masks,
        max_fill_mask_candidates=serving.max_fill_mask_candidates,
        tokenizer_workers=serving.tokenizer_workers,
        default_prompt_name=serving.default_prompt_name,
        default_prompt=serving.default_prompt,
        served_model_names=tuple(n for n in serving.served_model_name if n != args.model_name),
        split_request_items=(max(serving.max_split_request_items, serving.max_request_items)
                             if serving.auto_split_client_batches else None),
    )


def server_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for HFModelServer: kserve's own, and our serving and container settings."""
    return dict(http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
                serving=config.from_namespace(config.ServingConfig, args),
                container=config.from_namespace(config.ContainerConfig, args))
