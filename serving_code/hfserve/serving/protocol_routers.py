"""The routers both runtimes add beside kserve's V1/V2 endpoints, each calling the served model's service."""

from fastapi import APIRouter

from .cohere_embed import cohere_embed_router
from .hf_inference import hf_inference_router
from .openai.routes import openai_router
from .served_model import register_aliases
from .tei.rerank import document_rerank_router
from .tei.routes import tei_router_factory


def model_aliases(registry) -> APIRouter:
    """No routes: registers the served models' --served_model_name aliases once they are in the registry (the
    server calls the factories after registering its models)."""
    register_aliases(registry)
    return APIRouter()


def protocol_routers(max_concurrent_requests: int | None) -> tuple:
    """Router factories for HFModelServer: the model aliases, OpenAI, TEI, Cohere/Jina rerank, Cohere embed,
    Hugging Face Inference API / TGI."""
    return (model_aliases, openai_router, tei_router_factory(max_concurrent_requests), document_rerank_router,
            cohere_embed_router, hf_inference_router)
