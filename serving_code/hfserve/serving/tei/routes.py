"""The TEI routes: /embed, /predict, /rerank, /tokenize, /decode (POST), /info and /health (GET)."""

from functools import partial
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request, Response

from ...tasks import Task
from ...tasks.embedding import read_pooling_config
from ...tasks.params import InvalidRequest
from ..encoder_operations import EncoderOperations, WrongTask
from ..requests import check_texts
from .errors import Unhealthy, parse_body, tei_error, tei_errors
from .schemas import DecodeRequest, EmbedRequest, PredictRequest, RerankRequest, TokenizeRequest


def served_model(registry, require_ready: bool = True):
    """The one model this server serves (TEI routes name none)."""
    models = list(registry.get_models().values())
    if not models:
        raise Unhealthy("no model is loaded")
    model = models[0]
    if require_ready and not model.ready:
        raise Unhealthy(f"model {model.name!r} is not ready")
    return model


def encoder_model(registry) -> EncoderOperations:
    model = served_model(registry)
    if not isinstance(model, EncoderOperations):
        raise WrongTask(f"this model serves {model.settings.task}; the TEI routes serve encoder tasks")
    return model


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
        for path, endpoint in (("/embed", self.embed), ("/predict", self.predict), ("/rerank", self.rerank),
                               ("/tokenize", self.tokenize), ("/decode", self.decode)):
            self.router.add_api_route(path, endpoint, methods=["POST"])
        self.router.add_api_route("/info", self.info, methods=["GET"])
        self.router.add_api_route("/health", self.health, methods=["GET"])

    @tei_errors
    async def embed(self, request: Request):
        body = await parse_body(request, EmbedRequest)
        if body.prompt_name is not None:
            raise InvalidRequest("'prompt_name' is not supported: this server has no configured prompts")
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        vectors, _ = await encoder_model(self.registry).embed(texts, body.normalize, body.truncate,
                                                              body.truncation_direction)
        return vectors

    @tei_errors
    async def predict(self, request: Request):
        body = await parse_body(request, PredictRequest)
        inputs, single = predict_inputs(body.inputs)
        scores, _ = await encoder_model(self.registry).classify(inputs, body.raw_scores, body.truncate,
                                                                body.truncation_direction)
        return scores[0] if single else scores

    @tei_errors
    async def rerank(self, request: Request):
        body = await parse_body(request, RerankRequest)
        scores, _ = await encoder_model(self.registry).rerank(body.query, body.texts, body.raw_scores, body.truncate,
                                                              body.truncation_direction)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [{"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})}
                for i in ranked]

    @tei_errors
    async def tokenize(self, request: Request):
        body = await parse_body(request, TokenizeRequest)
        if body.prompt_name is not None:
            raise InvalidRequest("'prompt_name' is not supported: this server has no configured prompts")
        model = encoder_model(self.registry)
        texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
        check_texts(texts, model.settings.max_request_items)
        return model.tokenize(texts, body.add_special_tokens)

    @tei_errors
    async def decode(self, request: Request):
        body = await parse_body(request, DecodeRequest)
        ids = body.ids if body.ids and isinstance(body.ids[0], list) else [body.ids]
        model = encoder_model(self.registry)
        check_texts(ids, model.settings.max_request_items)
        return model.decode(ids, body.skip_special_tokens)

    @tei_errors
    async def info(self, request: Request):
        model = served_model(self.registry, require_ready=False)
        settings = model.settings
        info = {
            "model_id": settings.model_name,
            "model_sha": None,
            "model_dtype": _dtype(model),
            "model_type": _model_type(model),
            "task": settings.task.value,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_client_batch_size": settings.max_request_items,
            "auto_truncate": settings.auto_truncate,
            "version": _version(),
        }
        if isinstance(model, EncoderOperations):
            limits = model.batching_limits()
            encoder = model.text_encoder
            info.update(max_input_length=encoder.max_length if encoder else None, **limits)
        return info

    async def health(self):
        try:
            model = served_model(self.registry)
        except Unhealthy as error:
            return _unhealthy(str(error))
        check = getattr(model, "predictor_ready", None)
        if check is not None and not await check():
            return _unhealthy(f"the predictor of model {model.name!r} (Triton) is not ready")
        return Response(status_code=200)


def _unhealthy(message: str):
    return tei_error(HTTPStatus.SERVICE_UNAVAILABLE, message, "Unhealthy")


def _dtype(model) -> str | None:
    engine = getattr(model, "engine", None)
    torch_model = getattr(engine, "model", None)
    dtype = getattr(torch_model, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


def _model_type(model) -> dict:
    task = model.settings.task
    if task == Task.TEXT_EMBEDDING:
        return {"embedding": {"pooling": read_pooling_config(model.settings.model_dir).mode}}
    handler = getattr(model, "handler", None)
    labels = getattr(handler, "id2label", None) or {}
    head = {"id2label": {str(k): v for k, v in labels.items()}, "label2id": {v: int(k) for k, v in labels.items()}}
    if isinstance(model, EncoderOperations) and model.scores_pairs:
        return {"reranker": head}
    if task == Task.SEQUENCE_CLASSIFICATION:
        return {"classifier": head}
    return {"other": {"task": task.value}}


def _version() -> str | None:
    try:
        return version("hfserve")
    except PackageNotFoundError:
        return None


def tei_router(registry, max_concurrent_requests: int | None = None) -> APIRouter:
    return TEIRoutes(registry, max_concurrent_requests).router


def tei_router_factory(max_concurrent_requests: int):
    return partial(tei_router, max_concurrent_requests=max_concurrent_requests)
