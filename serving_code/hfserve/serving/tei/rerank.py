"""POST /v1/rerank and /openai/v1/rerank: the Cohere / Jina request shape (query, documents, top_n,
return_documents) that KServe's and vLLM's rerank routes also take. Errors are rendered in the OpenAI shape."""

import uuid

from fastapi import APIRouter, Request

from ..body import parse_body
from ..served_model import encoder_service
from .schemas import DocumentsRerankRequest

PATHS = ("/v1/rerank", "/openai/v1/rerank")


class DocumentRerankRoutes:
    def __init__(self, registry):
        self.registry = registry
        self.router = APIRouter()
        for path in PATHS:
            self.router.add_api_route(path, self.rerank, methods=["POST"])

    async def rerank(self, request: Request) -> dict:
        body = await parse_body(request, DocumentsRerankRequest)
        service = encoder_service(self.registry, body.model)
        documents = body.texts()
        scores, tokens = await service.rerank(body.query, documents, body.raw_scores, body.truncate,
                                              body.truncation_direction)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        if body.top_n:
            ranked = ranked[:body.top_n]
        results = [{"index": i, "relevance_score": scores[i],
                    **({"document": {"text": documents[i]}} if body.return_documents else {})} for i in ranked]
        return {"id": f"rerank-{uuid.uuid4().hex}", "model": service.name, "results": results,
                "usage": {"total_tokens": tokens}}


def document_rerank_router(registry) -> APIRouter:
    return DocumentRerankRoutes(registry).router
