"""Runtime 1's warm-up: forward passes of the shapes the pass planner will hand the engine, run before readiness.

The first pass at a new shape pays for allocations (torch's CPU allocator, ONNX Runtime's memory arena) and kernel
choices; without a warm-up the first requests after the pod turns ready carry that cost. The planner pads each
pass to its longest text, so the lengths are power-of-two buckets from 8 up to the longest input the server
accepts, one pass each at batch 1, plus one batched pass of 4 rows.
Triton's Python-backend model warms itself in initialize() (triton/model_py.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..startup_log import startup_logger
from ..tasks.tokenization import model_max_positions
from .passes import PassLimits

log = startup_logger()

SMALLEST_BUCKET = 8
WIDE_ROWS = 4


def planned_max_length(model_dir: Path, requested: int | None = None) -> int:
    """The longest input the server will pass to the model: --max_length, else the smaller of the model's and the
    tokenizer's limits (what tasks.tokenization.effective_max_length picks once the tokenizer is loaded)."""
    limits = [n for n in (requested, model_max_positions(model_dir), _tokenizer_limit(model_dir)) if n]
    return max(1, min(limits)) if limits else 512


def _tokenizer_limit(model_dir: Path) -> int | None:
    path = Path(model_dir) / "tokenizer_config.json"
    try:
        value = json.loads(path.read_text()).get("model_max_length")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, int) and 0 < value < 1_000_000 else None


def warmup_shapes(max_length: int, limits: PassLimits) -> list[tuple[int, int]]:
    """(rows, tokens) of each warm-up pass: batch 1 at every length bucket, then the largest pass the planner makes."""
    lengths = []
    length = SMALLEST_BUCKET
    while length < max_length:
        lengths.append(length)
        length *= 2
    lengths.append(max_length)
    shapes = [(1, n) for n in lengths]
    # One batched pass (as Triton's model warms up): its cost grows with rows, and 4 rows already take the
    # batched code paths.
    rows = min(WIDE_ROWS, limits.max_rows, max(1, limits.max_tokens // min(max_length, 32)))
    if rows > 1:
        shapes.append((rows, min(max_length, 32)))
    return shapes


def warm_up(forward: Callable[[dict[str, np.ndarray]], dict], input_names, shapes: list[tuple[int, int]],
            token_id: int = 0) -> float:
    """Run one pass per shape; returns the seconds it took."""
    started = time.perf_counter()
    for rows, tokens in shapes:
        ids = np.full((rows, tokens), token_id, dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        forward({name: feed[name] for name in input_names if name in feed})
    seconds = time.perf_counter() - started
    log.info("warmed up with %d forward passes (%s) in %.2f s", len(shapes),
             ", ".join(f"{r}x{t}" for r, t in shapes), seconds)
    return seconds
