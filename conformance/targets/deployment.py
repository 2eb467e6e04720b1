"""A deployment (one serving endpoint for one model), readiness polling, and what every target offers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

RUNTIME_HF = "kserve-huggingface"
RUNTIME_TRITON = "kserve-huggingface-triton"
RUNTIMES = {"huggingface": RUNTIME_HF, "triton": RUNTIME_TRITON}

MINILM = "minilm"
MINILM_DIM = 384
# Tiny random checkpoints built by devkit.tiny_models for the task-coverage tests.
TINY_ENCODER_KINDS = ("sequence_classification", "token_classification", "fill_mask")
TINY_GENERATIVE_KINDS = ("text_generation",)


@dataclass
class Deployment:
    id: str                     # pytest id: "huggingface", "triton", "huggingface-tiny-fill_mask", "target0"
    runtime: str                # "huggingface" | "triton" | "unknown"
    http_url: str
    grpc_target: str | None
    model_name: str
    task: str = "text_embedding"
    embedding_dim: int | None = MINILM_DIM
    triton_http_url: str | None = None
    triton_grpc_target: str | None = None
    triton_model_name: str | None = None
    # Kills, restarts and waits for containers: the pod itself (conformance.pods.base.Pod) on the local and
    # pods targets, a ClusterControl on a cluster, None for a URL.
    control: Any = None
    where: str = "local"        # "local" (local and pods targets) | "url" | "cluster"

    def http(self, timeout: float | httpx.Timeout = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, timeout=timeout)


def wait_http_ready(url: str, model: str | None, timeout: float) -> None:
    """Poll /v2/health/ready (and the model's readiness) until both say ready."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(base_url=url, timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                r = http.get("/v2/health/ready")
                last = f"/v2/health/ready {r.status_code} {r.text[:200]}"
                if r.status_code == 200 and r.json().get("ready", True):
                    if model is None:
                        return
                    r = http.get(f"/v2/models/{model}/ready")
                    last = f"/v2/models/{model}/ready {r.status_code} {r.text[:200]}"
                    if r.status_code == 200:
                        return
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s: {last}")


def floors(selected: dict[str, int]) -> dict[str, int]:
    """About 80% of what each group selects: a group that loses most of its tests, or all, fails the run."""
    return {group: max(1, int(0.8 * count)) for group, count in selected.items()}


class Target:
    """What the suite runs against (--target). Subclasses: local, pods, URL, cluster.

    The deployment ids per fixture are read at collection time; an empty list deselects the tests that need
    that fixture (listed in the report as not applicable). `floor` is the number of tests a full run must
    execute, `group_floors` the number per group (conformance.reporting), so that losing one group fails.
    """

    kind = ""
    floor = 1
    group_floors: dict[str, int] = {}
    local = None  # the LocalPool of the local and pods targets

    def __init__(self, name: str) -> None:
        self.name = name
        self.not_applicable: list[tuple[str, str]] = []

    def minilm_ids(self) -> list[str]:
        return ["huggingface", "triton"]

    def triton_ids(self) -> list[str]:
        return ["triton"]

    def pair_ids(self) -> list[tuple[str, str]]:
        return [("huggingface", "triton")]

    def tiny_pair_ids(self) -> list[tuple[str, str]]:
        return []

    def tiny_ids(self) -> list[str]:
        return [i for pair in self.tiny_pair_ids() for i in pair]

    def generative_ids(self) -> list[str]:
        return []

    def get(self, dep_id: str) -> Deployment:
        raise NotImplementedError

    def close(self) -> None:
        """Stop or remove whatever the target started."""
