"""The router: `POST /` (the Inference API task route, dispatched by the served task; TGI's compatible route for
generative models), `POST /generate` and `POST /generate_stream` (TGI)."""

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ...tasks.params import InvalidRequest
from ..body import read_json
from . import tgi
from .encoder_tasks import EncoderTasks
from .errors import HFError, validation


class HFInferenceRoutes:
    def __init__(self, registry):
        self.registry = registry
        self._encoder_tasks: dict[str, EncoderTasks] = {}
        self.router = APIRouter()
        self.router.add_api_route("/", self.task, methods=["POST"])
        self.router.add_api_route("/generate", self.generate, methods=["POST"])
        self.router.add_api_route("/generate_stream", self.generate_stream, methods=["POST"])

    async def task(self, request: Request):
        try:
            body = await _json_body(request)
            model = self._model()
            if model.settings.task.is_generative:
                tgi_request = tgi.parse_request(_without(body, "stream", "options"))
                if _stream_flag(body):
                    return self._stream(model, tgi_request)
                return [await self._generate(model, tgi_request)]
            if not isinstance(body, dict) or "inputs" not in body:
                raise validation("the request body must be a JSON object with 'inputs'")
            if "stream" in body:
                raise validation(f"model {model.name!r} serves {model.settings.task}; it does not generate text")
            parameters = body.get("parameters") or {}
            if not isinstance(parameters, dict) or not isinstance(body.get("options") or {}, dict):
                raise validation("'parameters' and 'options' must be JSON objects")
            # `options` (use_cache, wait_for_model) steer Hugging Face's hosted API; a dedicated server has no use
            return await self._encoder(model).answer(body["inputs"], parameters, body)
        except HFError as error:
            return error.response()

    async def generate(self, request: Request):
        try:
            model = self._generative_model()
            return await self._generate(model, tgi.parse_request(await _json_body(request)))
        except HFError as error:
            return error.response()

    async def generate_stream(self, request: Request):
        try:
            model = self._generative_model()
            return self._stream(model, tgi.parse_request(await _json_body(request)))
        except HFError as error:
            return error.response()

    # ---------------------------------------------------------------------------------------------

    async def _generate(self, model, request: tgi.TGIRequest) -> dict:
        try:
            generation = await model.generate(request.prompt, request.params)
        except InvalidRequest as error:
            raise validation(str(error)) from None
        return tgi.generate_response(request, generation)

    @staticmethod
    def _stream(model, request: tgi.TGIRequest) -> StreamingResponse:
        try:
            tokens = model.stream_tokens(request.prompt, request.params)  # checks the prompt before we answer 200
        except InvalidRequest as error:
            raise validation(str(error)) from None
        return StreamingResponse(tgi.stream_events(request, tokens), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    def _model(self):
        models = list(self.registry.get_models().values())
        if len(models) != 1:
            raise HFError(f"this route serves one model and {len(models)} are loaded", HTTPStatus.NOT_FOUND,
                          "not_found")
        model = models[0]
        if not model.ready:
            raise HFError(f"model {model.name!r} is not ready", HTTPStatus.SERVICE_UNAVAILABLE, "unhealthy")
        return model

    def _generative_model(self):
        model = self._model()
        if not model.settings.task.is_generative:
            raise HFError(f"model {model.name!r} serves {model.settings.task}, not text generation; "
                          "use POST / with the task's inputs", HTTPStatus.NOT_FOUND, "not_found")
        return model

    def _encoder(self, model) -> EncoderTasks:
        if model.name not in self._encoder_tasks:
            self._encoder_tasks[model.name] = EncoderTasks(model)
        return self._encoder_tasks[model.name]


async def _json_body(request: Request) -> Any:
    try:
        return await read_json(request)
    except InvalidRequest as error:
        raise HFError(str(error), HTTPStatus.BAD_REQUEST) from None


def _without(body: Any, *keys: str) -> Any:
    return {k: v for k, v in body.items() if k not in keys} if isinstance(body, dict) else body


def _stream_flag(body: dict) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise validation("'stream' must be true or false")
    return stream


def hf_inference_router(registry) -> APIRouter:
    return HFInferenceRoutes(registry).router

