"""`make autoscale-sim`: Knative's KPA and the Kubernetes HPA, restated, driven by a mixed-length load trace and a
per-pod capacity model, to compare what each scaling signal costs in replicas and in p99 (no cluster involved).

The restatements (pure functions, unit-tested in tests/test_autoscale_sim.py):
- KPA: knative/serving pkg/autoscaler/scaling/autoscaler.go `Scale` at knative-v1.21.3, lines 189-254: desired
  stable/panic pod counts ceil(observed / target) over the 60 s stable and 6 s panic windows (config.go lines 54-57:
  PanicWindowPercentage 10, StableWindow 60 s), clamped to [floor(ready / MaxScaleDownRate 2), ceil(ready x
  MaxScaleUpRate 1000)]; panic starts when dppc / ready >= PanicThreshold (200 %, 2.0), lasts until the stable
  window has passed without crossing it, and never scales down while it lasts. The target per pod is
  pkg/reconciler/autoscaling/resources/target.go `ResolveMetricTarget`: min(target, containerConcurrency) x 0.7.
  The decider runs every 2 s (config.go TickInterval).
- HPA: https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details
  desired = ceil(current x metric / target), no change within the 0.1 tolerance
  (--horizontal-pod-autoscaler-tolerance), not-ready pods counted at 0 usage when scaling up, a sync every 15 s
  (--horizontal-pod-autoscaler-sync-period), scale-down stabilization 300 s (the highest recommendation of the
  window) and the default scale-up policy (the larger of +100 % and +4 pods per 15 s) from the same page's
  "Default Behavior".
The pod model: the runtime's dynamic batching, a pass over what has arrived (up to 32 texts) costing a fixed time
plus a time per token, both fitted to two measured (req/s, average batch) points of runtime 1 on the mixed corpus
(PodModel.fitted); a pod is ready `time_to_ready_s` after it is created; requests go to the ready pod with the
fewest waiting. CPU utilization is the pod's busy share (a pass uses the pod's whole CPU request).
"""

from __future__ import annotations

import argparse
import math
import os
import random
from dataclasses import dataclass, field

import numpy as np

# ---- the autoscalers, restated ---------------------------------------------------------------------------------


def kpa_target(scale_target: float | None, container_concurrency: int, utilization: float = 0.7) -> float:
    """`ResolveMetricTarget` for the concurrency metric (ContainerConcurrencyTargetDefault 100)."""
    total = float(container_concurrency) if container_concurrency else 100.0
    if scale_target is not None:
        total = min(scale_target, container_concurrency) if container_concurrency else scale_target
    return max(0.01, total * utilization)


@dataclass
class KPA:
    """`Scale` of pkg/autoscaler/scaling/autoscaler.go with its panic state."""
    target: float
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    tick_s: float = 2.0
    scale_down_delay_s: float = 0.0  # autoscaling.knative.dev/scale-down-delay (lines 260-267: max over the delay)
    panic_time: float | None = None
    max_panic_pods: int = 0
    delayed: list[tuple[float, int]] = field(default_factory=list)

    def decide(self, now: float, ready: int, stable_value: float, panic_value: float) -> int:
        ready = max(ready, 1)
        max_up = math.ceil(self.max_scale_up_rate * ready)
        max_down = math.floor(ready / self.max_scale_down_rate) if self.max_scale_down_rate > 0 else 0
        dspc = math.ceil(stable_value / self.target)
        dppc = math.ceil(panic_value / self.target)
        stable_pods = int(min(max(dspc, max_down), max_up))
        panic_pods = int(min(max(dppc, max_down), max_up))
        over = dppc / ready >= self.panic_threshold
        if self.panic_time is None and over:
            self.panic_time = now
        elif over:
            self.panic_time = now
        elif self.panic_time is not None and self.panic_time + self.stable_window_s < now:
            self.panic_time, self.max_panic_pods = None, 0
        desired = stable_pods
        if self.panic_time is not None:
            desired = max(desired, panic_pods)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            desired = self.max_panic_pods
        if self.scale_down_delay_s:
            self.delayed = [(t, d) for t, d in self.delayed if t > now - self.scale_down_delay_s] + [(now, desired)]
            desired = max(d for _, d in self.delayed)
        return desired


def hpa_desired(current: int, metric_per_pod: float, target: float, tolerance: float = 0.1) -> int:
    """desiredReplicas = ceil(currentReplicas x currentMetricValue / desiredMetricValue), within tolerance none."""
    ratio = metric_per_pod / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return max(1, math.ceil(current * ratio))


@dataclass
class HPA:
    """One HPA: a metric averaged per pod, its target, the tolerance, the default behavior."""
    target: float
    tolerance: float = 0.1
    sync_s: float = 15.0
    scale_down_window_s: float = 300.0
    tick_s: float = 15.0
    recommendations: list[tuple[float, int]] = field(default_factory=list)

    def decide(self, now: float, current: int, ready: int, ready_sum: float, ready_only_when_up: bool) -> int:
        """`ready_sum`: the metric summed over ready pods. With `ready_only_when_up` (CPU), not-ready pods count at
        0 usage when the result would scale up; a custom per-pod metric averages over the pods that report it."""
        per_pod = ready_sum / max(ready, 1)
        desired = hpa_desired(current, per_pod, self.target, self.tolerance)
        if ready_only_when_up and desired > current and ready < current:
            desired = max(current, hpa_desired(current, ready_sum / current, self.target, self.tolerance))
        self.recommendations = [(t, d) for t, d in self.recommendations if t > now - self.scale_down_window_s]
        self.recommendations.append((now, desired))
        if desired < current:
            desired = min(current, max(d for _, d in self.recommendations))
        return min(desired, max(2 * current, current + 4))


# ---- the pods and the trace ------------------------------------------------------------------------------------

@dataclass
class PodModel:
    """One pod of the runtime: dynamic batching, a pass over a batch takes pass_s + tokens x token_s."""
    pass_s: float
    token_s: float
    time_to_ready_s: float
    max_batch: int = 32

    @classmethod
    def fitted(cls, points: list[tuple[float, float, float]], mean_tokens: float, time_to_ready_s: float) -> PodModel:
        """From two measured (req/s, average batch, ...) points: a batch of B texts is served at B / (pass +
        B x text) req/s, so two points give the fixed cost of a pass and the cost of a text (hence of a token)."""
        (x1, b1, _), (x2, b2, _) = points[:2]
        text_s = (b2 / x2 - b1 / x1) / (b2 - b1)
        return cls(b1 / x1 - b1 * text_s, text_s / mean_tokens, time_to_ready_s)


def closed_loop_queued_tokens(model: PodModel, tokens: list[int], concurrency: int, passes: int = 5000,
                              seed: int = 5) -> float:
    """What `make capacity` reads at a step, for this model: `concurrency` clients without think time all land in
    each pass, so the gauge holds one pass's tokens, time-weighted by how long each pass takes."""
    rng = random.Random(seed)
    sums = [sum(rng.choice(tokens) for _ in range(concurrency)) for _ in range(passes)]
    times = [model.pass_s + model.token_s * total for total in sums]
    return sum(total * t for total, t in zip(sums, times)) / sum(times)


@dataclass
class Pod:
    row: int
    ready_at: float
    free_at: float = 0.0
    draining: bool = False
    pending: list[tuple[float, int]] = field(default_factory=list)  # (arrival, tokens), FIFO, not started
    running: list[tuple[float, int]] = field(default_factory=list)  # the batch being computed
    run_end: float = 0.0

    def advance(self, now: float, model: PodModel, busy: np.ndarray, latencies: list[float]) -> None:
        """Run batches up to `now`: when free, the pod takes what has arrived (up to max_batch) as one pass."""
        while True:
            if self.running and self.run_end <= now:
                self.running = []
            if self.running or not self.pending:
                return
            begin = max(self.free_at, self.pending[0][0], self.ready_at)
            if begin > now:
                return
            count = 0
            while count < len(self.pending) and count < model.max_batch and self.pending[count][0] <= begin:
                count += 1
            batch, self.pending = self.pending[:count], self.pending[count:]
            end = begin + model.pass_s + model.token_s * sum(tok for _, tok in batch)
            latencies.extend(end - t for t, _ in batch)
            self.running, self.run_end, self.free_at = batch, end, end
            b = begin
            while b < end and int(b) < busy.shape[1]:
                edge = min(end, math.floor(b) + 1)
                busy[self.row, int(b)] += edge - b
                b = edge

    def in_flight(self) -> int:
        return len(self.pending) + len(self.running)

    def queued_tokens(self) -> int:
        return sum(tok for _, tok in self.pending) + sum(tok for _, tok in self.running)

    def backlog(self) -> float:
        return self.free_at + len(self.pending)


def trace(phases: list[tuple[float, float, float]], short: list[int], long: list[int], seed: int = 7
          ) -> list[tuple[float, int]]:
    """Poisson arrivals (time, tokens): phases of (seconds, requests per second, share of long texts)."""
    rng = random.Random(seed)
    out, start = [], 0.0
    for seconds, rate, long_share in phases:
        t = start
        while True:
            t += rng.expovariate(rate)
            if t >= start + seconds:
                break
            out.append((t, rng.choice(long if rng.random() < long_share else short)))
        start += seconds
    return out


@dataclass
class Result:
    name: str
    latencies_s: list[float]
    replicas: list[int]  # pods (ready or starting) each second
    minute_p99_s: list[float]

    def p99_ms(self) -> float:
        return 1000 * float(np.percentile(self.latencies_s, 99))

    def minutes_over(self, slo_ms: float) -> int:
        return sum(p * 1000 > slo_ms for p in self.minute_p99_s)

    def mean_replicas(self) -> float:
        return float(np.mean(self.replicas))


def simulate(name: str, arrivals: list[tuple[float, int]], model: PodModel, policy, signal: str,
             min_replicas: int = 1, max_replicas: int = 20, initial: int = 1, cpu_share: float = 1.0,
             metric_window_s: int = 30) -> Result:
    """`signal`: "concurrency" (KPA: in-flight requests summed over pods), "cpu" (HPA: busy share x 100 over the
    last 15 s) or "queued_tokens" (HPA through KEDA/the adapter: tokens not answered yet per pod, averaged over
    `metric_window_s`, the query's avg_over_time). `cpu_share`: the CPU a pass uses as a share of the pod's request
    (1: a CPU pod; a GPU pod's pass runs on the GPU). Requests go to the ready pod with the fewest waiting."""
    duration = math.ceil(arrivals[-1][0]) + 1 if arrivals else 1
    rows = iter(range(10**9))
    pods = [Pod(next(rows), ready_at=0.0) for _ in range(initial)]
    busy = np.zeros((64 * max_replicas, duration + 600))
    samples: list[tuple[float, float, int]] = []  # per second: (in-flight sum, queued tokens sum, ready pods)
    latencies: list[float] = []
    minute_p99, replicas = [], []
    index, next_tick, minute_from = 0, 0.0, 0
    for second in range(duration):
        now = float(second)
        while index < len(arrivals) and arrivals[index][0] < now + 1:
            t, tokens = arrivals[index]
            index += 1
            for p in pods:
                p.advance(t, model, busy, latencies)
            ready = [p for p in pods if p.ready_at <= t and not p.draining] or \
                [min((p for p in pods if not p.draining), key=lambda p: p.ready_at)]
            min(ready, key=lambda p: (len(p.pending), p.free_at)).pending.append((t, tokens))
        end = now + 1
        for p in pods:
            p.advance(end, model, busy, latencies)
        if second % 60 == 59:
            window = latencies[minute_from:]
            minute_p99.append(float(np.percentile(window, 99)) if window else 0.0)
            minute_from = len(latencies)
        pods = [p for p in pods if not (p.draining and not p.in_flight())]
        live = [p for p in pods if not p.draining]
        ready = [p for p in live if p.ready_at <= end]
        samples.append((sum(p.in_flight() for p in ready), sum(p.queued_tokens() for p in ready), len(ready)))
        replicas.append(len(live))
        if end < next_tick:
            continue
        next_tick = end + policy.tick_s
        current = len(live)
        if signal == "concurrency":
            stable = np.mean([s[0] for s in samples[-int(policy.stable_window_s):]])
            panic = np.mean([s[0] for s in samples[-int(policy.panic_window_s):]])
            desired = policy.decide(end, len(ready), float(stable), float(panic))
        elif signal == "cpu":
            window = busy[[p.row for p in ready], max(0, second - 14):second + 1]
            desired = policy.decide(end, current, len(ready), 100 * cpu_share * float(window.mean(axis=1).sum()), True)
        else:
            per_pod = np.mean([s[1] / max(s[2], 1) for s in samples[-metric_window_s:]])
            desired = policy.decide(end, current, len(ready), float(per_pod) * len(ready), False)
        desired = max(min_replicas, min(max_replicas, desired))
        if desired > current:
            for _ in range(desired - current):
                pods.append(Pod(next(rows), ready_at=end + model.time_to_ready_s, free_at=end + model.time_to_ready_s))
        elif desired < current:
            for pod in sorted(live, key=lambda p: (p.ready_at > end, -p.ready_at, p.in_flight()))[:current - desired]:
                pod.draining = True
    while any(p.in_flight() for p in pods):
        horizon = max(p.free_at for p in pods) + 1
        for p in pods:
            p.advance(horizon, model, busy, latencies)
    return Result(name, latencies, replicas, minute_p99)


# ---- the report ------------------------------------------------------------------------------------------------

PHASES = [(300, 20, 0.1), (300, 60, 0.1), (300, 120, 0.1), (300, 60, 0.5), (120, 200, 0.15), (480, 20, 0.1)]


def corpus_tokens(count: int = 2000, seed: int = 12) -> tuple[list[int], list[int]]:
    """Token counts of the mixed corpus under the packaged MiniLM's tokenizer (truncated at 256), split into
    short (queries, sentences) and long (paragraphs, documents: over 64 tokens)."""
    from hfserve.packaged_model import packaged_model_dir
    from transformers import AutoTokenizer

    from .corpus import sample_text

    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_dir()))
    counts = [len(tokenizer(sample_text(rng), truncation=True, max_length=256)["input_ids"]) for _ in range(count)]
    return [c for c in counts if c <= 64], [c for c in counts if c > 64]


@dataclass(frozen=True)
class Setup:
    name: str
    make: object  # () -> policy
    signal: str
    cpu_share: float = 1.0


def setups(knee_concurrency: int, knee_tokens: float) -> list[Setup]:
    """The recipes (charts/.../examples/autoscaling/) and their neighbours."""
    out = [Setup(f"HPA cpu {t} %", lambda t=t: HPA(t), "cpu") for t in (50, 70, 85)]
    out.append(Setup("HPA cpu 70 %, GPU pod (a pass uses 25 % of the CPU request)", lambda: HPA(70), "cpu", 0.25))
    target = kpa_target(knee_concurrency, knee_concurrency)
    out += [Setup(f"KPA concurrency {knee_concurrency} (x0.7)" + (f", scale-down-delay {d} s" if d else ""),
                  lambda d=d: KPA(target, scale_down_delay_s=d), "concurrency") for d in (0, 300)]
    out += [Setup(f"HPA queued tokens {f:g} x knee = {f * knee_tokens:.0f}/pod", lambda f=f: HPA(f * knee_tokens),
                  "queued_tokens") for f in (0.5, 0.7, 1.0)]
    return out


@dataclass(frozen=True)
class Row:
    name: str
    p99_ms: float  # mean over the seeds of each run's p99
    minutes_over: float
    mean_replicas: float
    max_replicas: int


def compare(model: PodModel, short: list[int], long: list[int], knee_concurrency: int, knee_tokens: float,
            slo_ms: float, seeds: tuple[int, ...] = (1, 2, 3), max_replicas: int = 20) -> list[Row]:
    """Each setup on the same traces (one per seed), averaged: the loop's dynamics make one trace's result jumpy."""
    traces = [trace(PHASES, short, long, seed) for seed in seeds]
    rows = []
    for setup in setups(knee_concurrency, knee_tokens):
        runs = [simulate(setup.name, a, model, setup.make(), setup.signal, max_replicas=max_replicas,
                         cpu_share=setup.cpu_share) for a in traces]
        rows.append(Row(setup.name, float(np.mean([r.p99_ms() for r in runs])),
                        float(np.mean([r.minutes_over(slo_ms) for r in runs])),
                        float(np.mean([r.mean_replicas() for r in runs])), max(max(r.replicas) for r in runs)))
    return rows


def table(rows: list[Row], slo_ms: float, minutes: int) -> str:
    lines = [f"| scaling | p99 ms | minutes of {minutes} with p99 > {slo_ms:g} ms | mean replicas | max replicas |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.p99_ms:.0f} | {r.minutes_over:.1f} | {r.mean_replicas:.2f} | {r.max_replicas} |")
    return "\n".join(lines)


def plot(model: PodModel, short: list[int], long: list[int], knee_concurrency: int, knee_tokens: float,
         path: str) -> bool:
    """Replicas over time for one trace (seed 1), one line per setup on a CPU pod."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    arrivals = trace(PHASES, short, long, 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    counts = np.bincount([int(t) for t, _ in arrivals])
    top.plot(np.convolve(counts, np.ones(10) / 10, mode="same"), color="grey")
    top.set_ylabel("requests/s")
    for setup in setups(knee_concurrency, knee_tokens):
        if setup.cpu_share == 1.0:
            run = simulate(setup.name, arrivals, model, setup.make(), setup.signal, cpu_share=setup.cpu_share)
            bottom.plot(run.replicas, label=setup.name, linewidth=1)
    bottom.set_ylabel("replicas")
    bottom.set_xlabel("seconds")
    bottom.legend(fontsize=7)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return True


BEGIN, END = "<!-- autoscale-sim:begin -->", "<!-- autoscale-sim:end -->"


def write_block(path: str, text: str) -> None:
    """Replace what lies between the markers (both kept) with `text`."""
    with open(path) as f:
        doc = f.read()
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # defaults: runtime 1 on the mixed corpus at c=8 and c=32, 2 vCPU, quiet machine (docs/benchmarks.md, "Rerun,
    # 20 s per point", 2026-11-27)
    parser.add_argument("--rps_low", type=float, default=53.4, help="measured req/s at the lower concurrency")
    parser.add_argument("--batch_low", type=float, default=2.8, help="its average batch (hfserve_batch_size)")
    parser.add_argument("--rps_high", type=float, default=75.9)
    parser.add_argument("--batch_high", type=float, default=6.4)
    parser.add_argument("--knee_concurrency", type=int, default=8, help="the knee at p99 <= 500 ms of those points")
    parser.add_argument("--knee_tokens", type=float, help="queued tokens at the knee (default: this model's, at the knee concurrency)")
    parser.add_argument("--time_to_ready_s", type=float, default=30.0)
    parser.add_argument("--slo_ms", type=float, default=500.0)
    parser.add_argument("--plot", help="write the replicas plot here (PNG) when matplotlib is installed")
    parser.add_argument("--write_docs", help="replace the block between the autoscale-sim markers of this file")
    args = parser.parse_args(argv)
    short, long = corpus_tokens()
    mean_tokens = float(np.mean(short + long))
    model = PodModel.fitted([(args.rps_low, args.batch_low, 0), (args.rps_high, args.batch_high, 0)], mean_tokens,
                            args.time_to_ready_s)
    knee_tokens = args.knee_tokens if args.knee_tokens is not None else \
        closed_loop_queued_tokens(model, short + long, args.knee_concurrency)
    rows = compare(model, short, long, args.knee_concurrency, knee_tokens, args.slo_ms)
    print(f"pod model: a pass takes {1000 * model.pass_s:.1f} ms + {1e6 * model.token_s:.0f} us per token "
          f"(mean {mean_tokens:.1f} tokens per text), ready {args.time_to_ready_s:g} s after it is created")
    print(f"trace phases (seconds, req/s, long share): {PHASES}; short texts mean "
          f"{np.mean(short):.1f} tokens, long {np.mean(long):.1f}")
    head = (f"Pod model: a pass takes {1000 * model.pass_s:.1f} ms + {1e6 * model.token_s:.0f} us per token (mean "
            f"{mean_tokens:.1f} tokens per text; short texts {np.mean(short):.1f}, long {np.mean(long):.1f}), ready "
            f"{args.time_to_ready_s:g} s after it is created. Trace phases (seconds, req/s, share of long texts): "
            f"{PHASES}; seeds 1-3, each row the mean of the three runs.")
    text = head + "\n\n" + table(rows, args.slo_ms, int(sum(p[0] for p in PHASES) // 60))
    print(text)
    if args.plot:
        made = plot(model, short, long, args.knee_concurrency, knee_tokens, args.plot)
        print("plot:", args.plot if made else "not drawn (matplotlib is not installed)")
        if made:
            text += f"\n\n![replicas over time, seed 1]({os.path.basename(args.plot)})"
    if args.write_docs:
        write_block(args.write_docs, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
