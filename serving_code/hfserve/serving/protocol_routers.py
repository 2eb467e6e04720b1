"""The routers both runtimes add beside kserve's V1/V2 endpoints, each calling the served model's service."""

from .cohere_embed import cohere_embed_router
from .hf_inference import hf_inference_router
from .openai.routes import openai_router
from .tei.rerank import document_rerank_router
from .tei.routes import tei_router_factory


def protocol_routers(max_concurrent_requests: int | None) -> tuple:
    """Router factories for HFModelServer: OpenAI, TEI, Cohere/Jina rerank, Cohere embed, Hugging Face Inference
    API / TGI."""
    return (openai_router, tei_router_factory(max_concurrent_requests), document_rerank_router, cohere_embed_router,
            hf_inference_router)
