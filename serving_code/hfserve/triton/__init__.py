"""Triton side of the `kserve-huggingface-triton` runtime.

- `local_server`: find a runnable `tritonserver` (NVIDIA's image, or the nvidia-pytriton wheel's copy prepared for
  this Python) and the environment it needs.
- `repository`: build a Triton model repository (Python backend) from a Hugging Face checkpoint directory.
- `model_py`: the Python-backend model Triton runs (copied into the repository as `1/model.py`).
- `supervisor`: start Triton in its own process group, drain it on SIGTERM, clean up its workers and shared memory.
- `__main__`: the launcher, `python -m hfserve.triton`.
"""
