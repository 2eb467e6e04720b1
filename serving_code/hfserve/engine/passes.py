"""Length-aware planning of forward passes: which queued inputs share a padded batch.

A padded batch costs about `overhead + rows * longest` token-steps: every row pads to the longest member, and each
pass has a fixed cost (Python, kernel launches, thread wake-ups) worth some tokens of work. Sorting inputs by length
and cutting the sorted run into contiguous groups that minimise the summed cost puts short texts with short texts,
and merges two groups only when padding them together costs less than one more pass. Each group is also bounded by
rows (`max_rows`) and padded tokens (`max_tokens`); a single input longer than `max_tokens` still gets a pass.

Pure Python, no torch: both the in-process batcher and Triton's Python-backend model use it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fixed cost of one forward pass, in tokens of work. CPU: all-MiniLM-L6-v2 on 2 cores costs ~4 ms per pass plus
# ~0.13 ms per padded token (docs/benchmarks.md), so ~32 tokens. On a GPU a pass is mostly fixed cost until the
# device saturates, so groups merge up to the token bound.
CPU_PASS_OVERHEAD_TOKENS = 32
GPU_PASS_OVERHEAD_TOKENS = 4096
CPU_MAX_BATCH_TOKENS = 2048
GPU_MAX_BATCH_TOKENS = 16384


@dataclass(frozen=True)
class PassLimits:
    max_rows: int = 32
    max_tokens: int = CPU_MAX_BATCH_TOKENS
    overhead_tokens: int = CPU_PASS_OVERHEAD_TOKENS

    def __post_init__(self):
        if self.max_rows < 1 or self.max_tokens < 1 or self.overhead_tokens < 0:
            raise ValueError(f"invalid pass limits {self}")


def limits_for_device(device_type: str, max_rows: int, max_tokens: int | None = None) -> PassLimits:
    """Defaults for a torch device type ('cpu', 'cuda', ...); an explicit max_tokens wins."""
    on_cpu = device_type == "cpu"
    default_tokens = CPU_MAX_BATCH_TOKENS if on_cpu else GPU_MAX_BATCH_TOKENS
    overhead = CPU_PASS_OVERHEAD_TOKENS if on_cpu else GPU_PASS_OVERHEAD_TOKENS
    return PassLimits(max_rows, max_tokens or default_tokens, overhead)


def plan_passes(lengths: list[int], limits: PassLimits, rows: list[int] | None = None) -> list[list[int]]:
    """Indices of `lengths` grouped into passes, each group ordered by length, groups shortest first.

    `rows[i]` is how many rows input i brings (a Triton request may hold several texts padded to one length);
    by default one each. Optimal for the cost model above, by dynamic programming over the sorted order.
    """
    rows = rows or [1] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)  # cut[i]: start of the last group of the best plan for the first i sorted inputs
    for end in range(1, n + 1):
        longest = lengths[order[end - 1]]
        group_rows = 0
        for start in range(end - 1, -1, -1):
            group_rows += rows[order[start]]
            single = start == end - 1
            if not single and (group_rows > limits.max_rows or group_rows * longest > limits.max_tokens):
                break
            cost = best[start] + limits.overhead_tokens + group_rows * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups = []
    end = n
    while end > 0:
        groups.append([order[i] for i in range(cut[end], end)])
        end = cut[end]
    return groups[::-1]


def padded_tokens(lengths: list[int], group: list[int], rows: list[int] | None = None) -> int:
    """Token positions a group's padded batch computes (padding included)."""
    return sum(rows[i] if rows else 1 for i in group) * max(lengths[i] for i in group)
