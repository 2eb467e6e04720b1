"""Transformer container of the `kserve-huggingface-triton` runtime: tokenization and post-processing here,
the model call to Triton over gRPC (`triton_client`)."""
