"""The OpenAI-compatible router: embeddings for embedding models, (chat) completions for generative ones."""

import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ...errors import InvalidRequest, ServingError
from ...tasks.embedding import embedding_to_base64
from ...tasks.generation import Generation, generation_params
from ..error_shapes import body as error_body
from ..served_model import encoder_service, generative_model
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

PREFIX = "/openai/v1"
# Where clients configured with a base URL without /openai (vLLM's and TEI's layout, LangChain's defaults) post.
EMBEDDING_ALIASES = ("/v1/embeddings", "/embeddings")


class OpenAIRoutes:
    """Embeddings from the served model's EncoderService, completions from its generative model; errors are
    raised and rendered in OpenAI's shape by the server's one handler."""

    def __init__(self, registry):
        self.registry = registry
        self.router = APIRouter(prefix=PREFIX)
        self.router.add_api_route("/models", self.models, methods=["GET"])
        self.router.add_api_route("/embeddings", self.embeddings, methods=["POST"])
        self.router.add_api_route("/completions", self.completions, methods=["POST"])
        self.router.add_api_route("/chat/completions", self.chat_completions, methods=["POST"])

    async def models(self):
        created = int(time.time())
        data = [{"id": name, "object": "model", "created": created, "owned_by": "hfserve"}
                for name in self.registry.get_models()]
        return {"object": "list", "data": data}

    async def embeddings(self, request: EmbeddingRequest):
        service = encoder_service(self.registry, request.model)
        texts = [request.input] if isinstance(request.input, str) else request.input
        if any(not isinstance(t, str) for t in texts):
            raise InvalidRequest("token-id input is not supported; send text")
        vectors, tokens = await service.embed(texts, truncate=request.truncate, dimensions=request.dimensions,
                                              prompt_name=request.prompt_name, prompt=request.prompt,
                                              input_type=request.input_type)
        encode = embedding_to_base64 if request.encoding_format == "base64" else (lambda v: v)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def completions(self, request: CompletionRequest):
        model = generative_model(self.registry, request.model)
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if len(prompts) != 1:
            raise InvalidRequest("send one prompt per request")
        return await self._complete(model, request, prompts[0], chat=False)

    async def chat_completions(self, request: ChatCompletionRequest):
        model = generative_model(self.registry, request.model)
        if not any(m.text().strip() for m in request.messages):
            raise InvalidRequest("every message is empty; send some text to reply to")
        prompt = model.chat_prompt([{"role": m.role, "content": m.text()} for m in request.messages])
        return await self._complete(model, request, prompt, chat=True)

    async def _complete(self, model, request, prompt: str, chat: bool):
        params = generation_params(request.sampling(), default_max_new_tokens=16 if not chat else 64)
        reply = _Reply(request.model, chat)
        if request.stream:
            # stream() checks the prompt before the response starts, so a bad one is still a 400
            return StreamingResponse(reply.sse(model.stream(prompt, params)), media_type="text/event-stream")
        return reply.whole(await model.generate(prompt, params))


class _Reply:
    """Shapes generations as OpenAI completion or chat.completion objects (whole or as SSE chunks)."""

    def __init__(self, model_name: str, chat: bool):
        self.model = model_name
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, choices: list, chunk: bool = False) -> dict:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    @staticmethod
    def _usage(generation: Generation) -> dict:
        return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens,
                "total_tokens": generation.prompt_tokens + generation.completion_tokens}

    def whole(self, generation: Generation) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": generation.text},
                      "finish_reason": generation.finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": generation.text, "finish_reason": generation.finish_reason,
                      "logprobs": None}
        return {**self._envelope([choice]), "usage": self._usage(generation)}

    def _chunk(self, text: str | None, finish_reason: str | None, first: bool = False) -> dict:
        if self.chat:
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
        return self._envelope([choice], chunk=True)

    async def sse(self, pieces: AsyncIterator) -> AsyncIterator[bytes]:
        if self.chat:
            yield _event(self._chunk(None, None, first=True))
        try:
            async for piece in pieces:
                if isinstance(piece, Generation):
                    yield _event({**self._chunk(None, piece.finish_reason), "usage": self._usage(piece)})
                elif piece:
                    yield _event(self._chunk(piece, None))
        except ServingError as error:  # after the stream started (--generation_timeout_s): an error event
            yield _event(error_body(error.kind, str(error), PREFIX + "/completions")[1])
        yield b"data: [DONE]\n\n"


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def openai_router(registry) -> APIRouter:
    """The /openai/v1 routes, and the embeddings route at the paths OpenAI-compatible clients also use."""
    routes = OpenAIRoutes(registry)
    router = APIRouter()
    router.include_router(routes.router)
    for path in EMBEDDING_ALIASES:
        router.add_api_route(path, routes.embeddings, methods=["POST"])
    return router
