"""POST /v1/rerank and /openai/v1/rerank: the Cohere / Jina request shape (query, documents, top_n,
return_documents) that KServe's and vLLM's rerank routes also take. Errors use the OpenAI error shape."""

import uuid
from http import HTTPStatus

from fastapi import APIRouter, Request

from ...tasks.params import InputTooLong, InvalidRequest
from ..errors import PredictorUnavailable
from ..openai.routes import openai_error
from .errors import Unhealthy, error_response, parse_body
from .routes import encoder_model
from .schemas import DocumentsRerankRequest

PATHS = ("/v1/rerank", "/openai/v1/rerank")


class DocumentRerankRoutes:
    def __init__(self, registry):
        self.registry = registry
        self.router = APIRouter()
        for path in PATHS:
            self.router.add_api_route(path, self.rerank, methods=["POST"])

    async def rerank(self, request: Request):
        try:
            return await self._rerank(request)
        except InputTooLong as error:
            return openai_error(HTTPStatus.BAD_REQUEST, str(error))
        except InvalidRequest as error:
            return openai_error(HTTPStatus.BAD_REQUEST, str(error))
        except (Unhealthy, PredictorUnavailable) as error:
            return openai_error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), "unavailable")
        except Exception as error:  # noqa: BLE001 - logged with its trace, answered without it
            error_response(error, request.url.path)
            return openai_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; the server logged the details",
                                "internal_error")

    async def _rerank(self, request: Request) -> dict:
        body = await parse_body(request, DocumentsRerankRequest)
        model = encoder_model(self.registry)
        if body.model is not None and body.model != model.name:
            return openai_error(HTTPStatus.NOT_FOUND, f"model {body.model!r} is not served here", "not_found_error")
        documents = body.texts()
        scores, tokens = await model.rerank(body.query, documents, body.raw_scores, body.truncate,
                                            body.truncation_direction)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        if body.top_n:
            ranked = ranked[:body.top_n]
        results = [{"index": i, "relevance_score": scores[i],
                    **({"document": {"text": documents[i]}} if body.return_documents else {})} for i in ranked]
        return {"id": f"rerank-{uuid.uuid4().hex}", "model": model.name, "results": results,
                "usage": {"total_tokens": tokens}}


def document_rerank_router(registry) -> APIRouter:
    return DocumentRerankRoutes(registry).router
