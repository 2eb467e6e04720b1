"""Routes after Hugging Face's text-embeddings-inference (TEI) HTTP API, plus the Cohere/Jina-style rerank
route: /embed, /predict, /rerank, /tokenize, /decode, /info, /health, /v1/rerank, /openai/v1/rerank.

Written once over the served model's EncoderService (core/encoder_service.py), so both runtimes serve them.
"""
