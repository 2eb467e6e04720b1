"""Hugging Face model serving runtimes for KServe."""
