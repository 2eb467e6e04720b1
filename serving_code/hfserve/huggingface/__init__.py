"""The kserve-huggingface runtime: one container, the model runs in-process with transformers + torch."""
