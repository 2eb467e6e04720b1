"""Hugging Face's own protocols: the Inference API task route (`POST /`) and text-generation-inference's
`/generate` and `/generate_stream`, so `huggingface_hub.InferenceClient(base_url=...)` works unchanged.

Written once over the served model (its EncoderService, or the GenerativeModel): both runtimes register the
same router.
"""

from .routes import hf_inference_router

__all__ = ["hf_inference_router"]
