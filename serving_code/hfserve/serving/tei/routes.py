"""The TEI routes: /embed, /predict, /rerank, /tokenize, /decode (POST), /info and /health (GET).

Each body is parsed (serving/body.py), handed to the served model's EncoderService (core/encoder_service.py), and
shaped as TEI answers; errors are raised and rendered in TEI's shape by the server's one handler."""

from functools import partial
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request, Response

from ...errors import InvalidRequest, Unavailable
from ...tasks import Task
from ...tasks.embedding import EMBEDDING_TYPES, embedding_width, read_pooling_config
from ...tasks.params import V2_EMBEDDING_TYPES
from ..body import parse_body
from ..served_model import encoder_service, served_model
from .schemas import DecodeRequest, EmbedRequest, PredictRequest, RerankRequest, SimilarityRequest, TokenizeRequest


def predict_inputs(inputs) -> tuple[list, bool]:
    """TEI's /predict inputs -> (texts or (text, text_pair) pairs, whether it was a single input)."""
    if isinstance(inputs, str):
        return [inputs], True
    if all(isinstance(i, str) for i in inputs):
        if len(inputs) == 2:  # TEI reads a two-string list as one pair
            return [tuple(inputs)], True
        return list(inputs), False
    items = []
    for index, item in enumerate(inputs):
        if len(item) not in (1, 2):
            raise InvalidRequest(f"inputs[{index}] must be [text] or [text, text_pair], got {len(item)} strings")
        items.append(item[0] if len(item) == 1 else tuple(item))
    return items, False


class TEIRoutes:
    def __init__(self, registry, max_concurrent_requests: int | None = None):
        self.registry = registry
        self.max_concurrent_requests = max_concurrent_requests
        self.router = APIRouter()
        for path, endpoint in (("/embed", self.embed), ("/similarity", self.similarity), ("/predict", self.predict),
                               ("/rerank", self.rerank),
                               ("/tokenize", self.tokenize), ("/decode", self.decode)):
            self.router.add_api_route(path, endpoint, methods=["POST"])
        self.router.add_api_route("/info", self.info, methods=["GET"])
        self.router.add_api_route("/health", self.health, methods=["GET"])

    async def embed(self, request: Request):
        body = await parse_body(request, EmbedRequest)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        vectors, _ = await encoder_service(self.registry).embed(texts, body.normalize, body.truncate,
                                                                body.truncation_direction,
                                                                prompt_name=body.prompt_name,
                                                                dimensions=body.dimensions)
        return vectors

    async def similarity(self, request: Request):
        body = await parse_body(request, SimilarityRequest)
        options = body.parameters
        return await encoder_service(self.registry).similarity(
            body.inputs.source_sentence, body.inputs.sentences, options.truncate, options.truncation_direction,
            options.prompt_name)

    async def predict(self, request: Request):
        body = await parse_body(request, PredictRequest)
        inputs, single = predict_inputs(body.inputs)
        scores, _ = await encoder_service(self.registry).classify(inputs, "none" if body.raw_scores else None,
                                                                  body.truncate, body.truncation_direction)
        return scores[0] if single else scores

    async def rerank(self, request: Request):
        body = await parse_body(request, RerankRequest)
        scores, _ = await encoder_service(self.registry).rerank(body.query, body.texts, body.raw_scores,
                                                                body.truncate, body.truncation_direction)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [{"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})}
                for i in ranked]

    async def tokenize(self, request: Request):
        body = await parse_body(request, TokenizeRequest)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        answer = await encoder_service(self.registry).tokenize_json(texts, body.add_special_tokens, body.prompt_name)
        return Response(answer, media_type="application/json")

    async def decode(self, request: Request):
        body = await parse_body(request, DecodeRequest)
        ids = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
        answer = await encoder_service(self.registry).decode_json(ids, body.skip_special_tokens)
        return Response(answer, media_type="application/json")

    async def info(self, request: Request):
        model = served_model(self.registry, require_ready=False)
        settings = model.settings
        service = getattr(model, "service", None)  # None for a generative model
        info = {
            "model_id": settings.model_name,
            "model_sha": None,
            "model_dtype": service.backend.dtype if service else None,
            "model_type": _model_type(settings, service),
            "task": settings.task.value,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_client_batch_size": settings.max_request_items,
            # above max_client_batch_size: split into batches of that size (up to max_split_client_batch_size)
            "auto_split_client_batches": settings.split_request_items is not None,
            "max_split_client_batch_size": settings.split_request_items,
            "auto_truncate": settings.auto_truncate,
            "version": _version(),
        }
        if service is not None:
            info.update(service.limits())
            if service.prompts is not None:  # text_embedding: the checkpoint's prompts and the default
                info.update(service.prompts.describe())
                info.update(_embedding_outputs(settings))
        return info

    async def health(self):
        model = served_model(self.registry)
        service = getattr(model, "service", None)
        if service is not None and not await service.ready():
            raise Unavailable(f"the predictor of model {model.name!r} (Triton) is not ready")
        return Response(status_code=200)


def _model_type(settings, service) -> dict:
    task = settings.task
    if task == Task.TEXT_EMBEDDING:
        return {"embedding": {"pooling": read_pooling_config(settings.model_dir).mode}}
    labels = (service.handler.id2label if service and service.handler else None) or {}
    head = {"id2label": {str(k): v for k, v in labels.items()}, "label2id": {v: int(k) for k, v in labels.items()}}
    if service is not None and service.scores_pairs:
        return {"reranker": head}
    if task == Task.SEQUENCE_CLASSIFICATION:
        return {"classifier": head}
    return {"other": {"task": task.value}}


def _embedding_outputs(settings) -> dict:
    """What an embedding request may ask for beyond the prompt: the width (Matryoshka `dimensions` 1..width), the
    output types of Cohere's /v2/embed and of V2's `embedding_types` parameter (docs/routes.md)."""
    return {"embedding_dimension": embedding_width(settings.model_dir),
            "normalized": read_pooling_config(settings.model_dir).normalize,
            "embedding_types": list(EMBEDDING_TYPES), "v2_embedding_types": list(V2_EMBEDDING_TYPES)}


def _version() -> str | None:
    try:
        return version("hfserve")
    except PackageNotFoundError:
        return None


def tei_router(registry, max_concurrent_requests: int | None = None) -> APIRouter:
    return TEIRoutes(registry, max_concurrent_requests).router


def tei_router_factory(max_concurrent_requests: int):
    return partial(tei_router, max_concurrent_requests=max_concurrent_requests)
