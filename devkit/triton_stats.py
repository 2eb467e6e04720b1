"""Triton's per-model statistics over its HTTP API, for tests and benchmarks (never used in a pod)."""

from __future__ import annotations

import json
import urllib.request


class BatchStats:
    """Triton's counters for a model: requests (inference_count counts batch rows) vs forward passes."""

    def __init__(self, inference_count: int, execution_count: int, success_count: int):
        self.inference_count = inference_count
        self.execution_count = execution_count
        self.success_count = success_count

    @classmethod
    def from_json(cls, response: dict) -> "BatchStats":
        stats = response.get("model_stats", [])
        return cls(sum(int(s.get("inference_count", 0)) for s in stats),
                   sum(int(s.get("execution_count", 0)) for s in stats),
                   sum(int(s.get("inference_stats", {}).get("success", {}).get("count", 0)) for s in stats))

    def __sub__(self, other: "BatchStats") -> "BatchStats":
        return BatchStats(self.inference_count - other.inference_count, self.execution_count - other.execution_count,
                          self.success_count - other.success_count)

    @property
    def average_batch_rows(self) -> float:
        """Average rows (texts) per forward pass."""
        return self.inference_count / self.execution_count if self.execution_count else 0.0

    @property
    def average_batch_requests(self) -> float:
        """Average requests merged into one forward pass."""
        return self.success_count / self.execution_count if self.execution_count else 0.0

    def __repr__(self) -> str:
        return (f"BatchStats(inference_count={self.inference_count}, execution_count={self.execution_count}, "
                f"success_count={self.success_count})")


def triton_batch_stats(http_url: str, model_name: str, timeout: float = 5.0) -> BatchStats:
    """Synchronous helper for tests and bench: Triton's statistics over its HTTP API."""
    with urllib.request.urlopen(f"{http_url.rstrip('/')}/v2/models/{model_name}/stats", timeout=timeout) as response:
        return BatchStats.from_json(json.loads(response.read()))
