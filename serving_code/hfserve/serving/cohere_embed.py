"""POST /v2/embed in Cohere's v2 shape (what cohere.ClientV2.embed sends and parses): texts, input_type mapped to
the checkpoint's prompts (tasks/prompts.py), embedding_types float / int8 / uint8 / binary / ubinary / base64
(tasks/embedding.py quantize), output_dimension (Matryoshka), truncate NONE / START / END. Errors take the shape
of the other Cohere-style route, /v1/rerank (serving/error_shapes.py)."""

import uuid
from typing import Literal

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from ..errors import InvalidRequest
from ..tasks.embedding import EMBEDDING_TYPES, quantize
from .body import parse_body
from .served_model import encoder_service

PATH = "/v2/embed"
TRUNCATE = {"NONE": (False, "right"), "END": (True, "right"), "START": (True, "left")}


class CohereEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = None
    texts: list[StrictStr] | None = None
    images: list | None = None
    inputs: list | None = None
    input_type: StrictStr | None = None
    embedding_types: list[Literal[EMBEDDING_TYPES]] = Field(default_factory=lambda: ["float"], min_length=1)
    output_dimension: StrictInt | None = None
    truncate: Literal["NONE", "START", "END"] = "END"
    max_tokens: StrictInt | None = None


class CohereEmbedRoutes:
    def __init__(self, registry):
        self.registry = registry
        self.router = APIRouter()
        self.router.add_api_route(PATH, self.embed, methods=["POST"])

    async def embed(self, request: Request) -> dict:
        body = await parse_body(request, CohereEmbedRequest)
        if body.images or body.inputs:
            raise InvalidRequest("this server embeds texts only; send 'texts'")
        if not body.texts:
            raise InvalidRequest("'texts' must hold at least one text")
        if body.max_tokens is not None:
            raise InvalidRequest("'max_tokens' is not supported; the model's own limit applies (GET /info)")
        service = encoder_service(self.registry, body.model)
        truncate, direction = TRUNCATE[body.truncate]
        vectors, tokens = await service.embed(body.texts, truncate=truncate, truncation_direction=direction,
                                              input_type=body.input_type, dimensions=body.output_dimension)
        matrix = np.asarray(vectors, dtype=np.float32)
        return {
            "id": str(uuid.uuid4()),
            "response_type": "embeddings_by_type",
            "embeddings": {kind: quantize(matrix, kind) for kind in dict.fromkeys(body.embedding_types)},
            "texts": body.texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
        }


def cohere_embed_router(registry) -> APIRouter:
    return CohereEmbedRoutes(registry).router
