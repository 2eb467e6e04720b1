"""The router: `POST /` (the Inference API task route, dispatched by the served task; TGI's compatible route for
generative models), `POST /generate` and `POST /generate_stream` (TGI). Errors are raised and rendered in the
Hugging Face shape by the server's one handler."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ...errors import InvalidRequest
from ..body import read_json
from ..served_model import encoder_service, generative_model, served_model
from . import tgi
from .encoder_tasks import EncoderTasks


class HFInferenceRoutes:
    def __init__(self, registry):
        self.registry = registry
        self.router = APIRouter()
        self.router.add_api_route("/", self.task, methods=["POST"])
        self.router.add_api_route("/generate", self.generate, methods=["POST"])
        self.router.add_api_route("/generate_stream", self.generate_stream, methods=["POST"])

    async def task(self, request: Request):
        body = await read_json(request)
        model = served_model(self.registry)
        if model.settings.task.is_generative:
            tgi_request = tgi.parse_request(_without(body, "stream", "options"))
            if _stream_flag(body):
                return _stream(model, tgi_request)
            return [tgi.generate_response(tgi_request, await model.generate(tgi_request.prompt, tgi_request.params))]
        if not isinstance(body, dict) or "inputs" not in body:
            raise InvalidRequest("the request body must be a JSON object with 'inputs'")
        if "stream" in body:
            raise InvalidRequest(f"model {model.name!r} serves {model.settings.task}; it does not generate text")
        parameters = body.get("parameters") or {}
        if not isinstance(parameters, dict) or not isinstance(body.get("options") or {}, dict):
            raise InvalidRequest("'parameters' and 'options' must be JSON objects")
        # `options` (use_cache, wait_for_model) steer Hugging Face's hosted API; a dedicated server has no use
        return await EncoderTasks(encoder_service(self.registry)).answer(body["inputs"], parameters, body)

    async def generate(self, request: Request):
        model = generative_model(self.registry)
        tgi_request = tgi.parse_request(await read_json(request))
        return tgi.generate_response(tgi_request, await model.generate(tgi_request.prompt, tgi_request.params))

    async def generate_stream(self, request: Request):
        model = generative_model(self.registry)
        return _stream(model, tgi.parse_request(await read_json(request)))


def _stream(model, request: tgi.TGIRequest) -> StreamingResponse:
    tokens = model.stream_tokens(request.prompt, request.params)  # checks the prompt before we answer 200
    return StreamingResponse(tgi.stream_events(request, tokens), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _without(body: Any, *keys: str) -> Any:
    return {k: v for k, v in body.items() if k not in keys} if isinstance(body, dict) else body


def _stream_flag(body: dict) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false")
    return stream


def hf_inference_router(registry) -> APIRouter:
    return HFInferenceRoutes(registry).router
