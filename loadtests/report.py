"""Reading locust's CSV output: the PNG plot over time and the pass/fail thresholds.

    python -m loadtests.report reports/load/load --p99-ms 2000
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Totals:
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    rps: float

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_totals(prefix: Path | str) -> Totals:
    """The Aggregated row of <prefix>_stats.csv."""
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    if not rows:
        raise ValueError(f"no Aggregated row in {prefix}_stats.csv")
    r = rows[-1]
    return Totals(
        requests=int(_float(r["Request Count"]) or 0),
        failures=int(_float(r["Failure Count"]) or 0),
        p50_ms=_float(r["50%"]),
        p99_ms=_float(r["99%"]),
        rps=_float(r["Requests/s"]),
    )


def read_history(prefix: Path | str) -> dict[str, list[float]]:
    """Time series of the Aggregated rows of <prefix>_stats_history.csv (seconds since the first row)."""
    cols = {"t": [], "users": [], "rps": [], "fps": [], "p50": [], "p99": []}
    with open(f"{prefix}_stats_history.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    if not rows:
        return cols
    t0 = _float(rows[0]["Timestamp"])
    for r in rows:
        cols["t"].append(_float(r["Timestamp"]) - t0)
        cols["users"].append(_float(r["User Count"]))
        cols["rps"].append(_float(r["Requests/s"]))
        cols["fps"].append(_float(r["Failures/s"]))
        # Before the first response locust writes 0 or "N/A": no latency yet, not a latency of 0.
        answered = _float(r.get("Total Request Count", "1")) > 0
        cols["p50"].append(_float(r["50%"]) if answered else math.nan)
        cols["p99"].append(_float(r["99%"]) if answered else math.nan)
    return cols


def plot(prefix: Path | str, out_png: Path | str, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = read_history(prefix)
    if not h["t"]:
        raise ValueError(f"no Aggregated rows in {prefix}_stats_history.csv")
    totals = read_totals(prefix)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, constrained_layout=True)

    ax1.plot(h["t"], h["rps"], color="tab:blue", lw=2, label="requests/s")
    if any(v > 0 for v in h["fps"] if not math.isnan(v)):
        ax1.plot(h["t"], h["fps"], color="tab:red", lw=2, label="failures/s")
    ax1.set_ylabel("throughput (requests/s)")
    ax1.set_ylim(bottom=0)
    ax1.grid(alpha=0.3)
    users = ax1.twinx()
    users.step(h["t"], h["users"], where="post", color="tab:gray", ls="--", lw=1.2, label="users")
    users.set_ylabel("users")
    users.set_ylim(0, max(h["users"] + [1]) * 1.15)
    lines = ax1.get_lines() + users.get_lines()
    ax1.legend(lines, [ln.get_label() for ln in lines], loc="upper left")

    ax2.plot(h["t"], h["p50"], color="tab:green", lw=2, label="p50 (rolling window)")
    ax2.plot(h["t"], h["p99"], color="tab:orange", lw=2, label="p99 (rolling window)")
    ax2.set_ylabel("latency (ms)")
    ax2.set_xlabel("time since start (s)")
    ax2.set_ylim(bottom=0)
    ax2.grid(alpha=0.3)
    ax2.legend(loc="upper left")

    summary = (f"{totals.requests} requests, {totals.failures} failed, {totals.rps:.1f} req/s, "
               f"p50 {totals.p50_ms:.0f} ms, p99 {totals.p99_ms:.0f} ms")
    fig.suptitle((title + "\n" if title else "") + summary, fontsize=11)
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def check(totals: Totals, p99_ms: float | None, max_error_rate: float = 0.0) -> list[str]:
    """What breaks the thresholds; empty when the run passes."""
    problems = []
    if totals.requests == 0:
        problems.append("no requests were made")
    if totals.error_rate > max_error_rate:
        problems.append(f"error rate {totals.error_rate:.2%} ({totals.failures}/{totals.requests}) > {max_error_rate:.2%}")
    if p99_ms is not None and not (totals.p99_ms <= p99_ms):
        problems.append(f"p99 {totals.p99_ms:.0f} ms > {p99_ms:.0f} ms")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("prefix", help="locust --csv prefix")
    ap.add_argument("--p99-ms", type=float, default=None)
    ap.add_argument("--png", default=None)
    args = ap.parse_args(argv)
    plot(args.prefix, args.png or f"{args.prefix}.png")
    problems = check(read_totals(args.prefix), args.p99_ms)
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
