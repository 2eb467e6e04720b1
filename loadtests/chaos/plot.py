"""The soak's timeline as a PNG: requests per second (200s and errors), latency of the 200s, faults shaded."""

from __future__ import annotations

from pathlib import Path

from loadtests.chaos.judge import Run


def plot(run: Run, t0: float, path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = sorted(run.outcomes, key=lambda o: o.end)
    end = max((o.end for o in outcomes), default=t0) - t0
    bins = max(1, int(end) + 1)
    ok, errors = [0] * bins, [0] * bins
    for o in outcomes:
        i = min(bins - 1, int(o.end - t0))
        (ok if o.status == 200 else errors)[i] += 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.plot(range(bins), ok, label="200 / s", color="tab:green")
    top.plot(range(bins), errors, label="503, 4xx, refused / s", color="tab:red")
    top.set_ylabel("requests per second")
    top.legend(loc="upper right")
    good = [o for o in outcomes if o.status == 200]
    bottom.scatter([o.end - t0 for o in good], [1000 * (o.end - o.start) for o in good], s=2, color="tab:blue")
    bottom.set_ylabel("latency of 200s (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("seconds since start")
    for axis in (top, bottom):
        for f in run.faults:
            axis.axvspan(f.start - t0, (f.end or f.start) - t0 + 0.3, color="orange", alpha=0.25)
    for f in run.faults:
        top.text(f.start - t0, top.get_ylim()[1] * 0.92, f.kind, rotation=90, fontsize=7, va="top")
    fig.suptitle(f"chaos soak: {summary['requests']} requests, {summary['fault_count']} faults, "
                 f"{summary['lost']} lost ({'PASS' if summary['passed'] else 'FAIL'})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
