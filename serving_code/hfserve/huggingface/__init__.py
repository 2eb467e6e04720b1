"""The kserve-huggingface runtime: one container, the model runs in-process with transformers + torch."""

from ..openmp import keep_openmp_workers_warm

keep_openmp_workers_warm()  # before anything imports torch
