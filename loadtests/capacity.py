"""`make capacity TARGET=<url>`: one pod's capacity on the mixed corpus, and the autoscaling recipe values for it.

Stepped closed-loop load (N clients, each with one V1 request in flight, one text per request from the locust
corpus, loadtests/corpus.py), N = 1, 2, 4, ... While each step runs, the runtime's /metrics is sampled for
hfserve_requests_in_flight and hfserve_queue_tokens (the gauges a scaler reads) and process_cpu_seconds_total.
The knee is the last step whose p99 is under --p99_ms and which still added throughput (a step that gains under
--min_gain adds only latency). The recipe values (docs/autoscaling.md, charts/.../examples/autoscaling/):
- KPA: containerConcurrency = the knee's concurrency, scaleTarget the same (Knative aims at 70 % of it);
- KEDA threshold / Prometheus-adapter averageValue: 0.5 x the mean queued tokens per pod at the knee (the
  headroom the simulation, loadtests/autoscale_sim.py, found to avoid overshoot);
- HPA on CPU: the CPU the pod used at the knee, as a share of its CPU request (--cpu_request).
TARGET is the runtime's base URL (http://host:port); a Serverless pod's port is queue-proxy's, whose own
metrics are elsewhere, so point it at the pod's container port (kubectl port-forward) to read the gauges.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass

import aiohttp
import numpy as np

from .closed_loop import closed_loop
from .corpus import sample_text


@dataclass(frozen=True)
class Step:
    concurrency: int
    requests_per_s: float
    p99_ms: float
    in_flight: float  # mean of hfserve_requests_in_flight over the step
    queued_tokens: float  # mean of hfserve_queue_tokens over the step
    cpu_cores: float | None = None  # process CPU seconds per second over the step (None: not exported)
    errors: int = 0


TOKEN_HEADROOM = 0.5  # the share of the knee's queued tokens to aim at (make autoscale-sim: 0.7 and 1.0 overshot)


@dataclass(frozen=True)
class Recipe:
    knee: Step
    container_concurrency: int
    kpa_target: int
    keda_threshold_tokens: int
    hpa_cpu_utilization: int | None


def find_knee(steps: list[Step], p99_ms: float, min_gain: float = 0.05) -> Step | None:
    """The last step, in rising concurrency, that answered without errors under the p99 target and whose
    throughput was at least (1 + min_gain) times the previous good step's; None if the first step misses."""
    knee = None
    for step in sorted(steps, key=lambda s: s.concurrency):
        if step.errors or step.p99_ms > p99_ms:
            break
        if knee is not None and step.requests_per_s < knee.requests_per_s * (1 + min_gain):
            break
        knee = step
    return knee


def recipe(knee: Step, cpu_request: float | None = None) -> Recipe:
    utilization = None
    if knee.cpu_cores is not None and cpu_request:
        utilization = max(1, min(100, round(100 * knee.cpu_cores / cpu_request)))
    return Recipe(knee, knee.concurrency, knee.concurrency, max(1, round(TOKEN_HEADROOM * knee.queued_tokens)),
                  utilization)


def parse_gauges(text: str) -> dict[str, float]:
    """Sum of each family's samples in a Prometheus text exposition (the families capacity reads)."""
    out: dict[str, float] = {}
    for name in ("hfserve_requests_in_flight", "hfserve_queue_tokens", "process_cpu_seconds_total"):
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        if values:
            out[name] = sum(float(v) for v in values)
    return out


def _scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
        return parse_gauges(reply.read().decode())


async def run_step(base: str, model: str, texts: list[str], concurrency: int, seconds: float,
                   warmup: float = 1.0) -> Step:
    url = f"{base}/v1/models/{model}:predict"
    latencies: list[float] = []
    samples: list[dict[str, float]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def sampler(deadline: float) -> None:
            while time.perf_counter() < deadline:
                samples.append(await asyncio.to_thread(_scrape, base))
                await asyncio.sleep(0.25)

        await closed_loop(session, url, texts, concurrency, time.perf_counter() + warmup)
        first = await asyncio.to_thread(_scrape, base)
        start = time.perf_counter()
        deadline = start + seconds
        _, errors = await asyncio.gather(sampler(deadline),
                                         closed_loop(session, url, texts, concurrency, deadline,
                                                     latencies=latencies))
        elapsed = time.perf_counter() - start
        last = await asyncio.to_thread(_scrape, base)
    mean = lambda key: float(np.mean([s.get(key, 0.0) for s in samples])) if samples else 0.0  # noqa: E731
    cpu = None
    if "process_cpu_seconds_total" in first and "process_cpu_seconds_total" in last:
        cpu = (last["process_cpu_seconds_total"] - first["process_cpu_seconds_total"]) / elapsed
    return Step(concurrency, len(latencies) / elapsed, 1000 * float(np.percentile(latencies, 99)),
                mean("hfserve_requests_in_flight"), mean("hfserve_queue_tokens"), cpu, errors)


def model_name(base: str) -> str:
    with urllib.request.urlopen(f"{base}/v1/models", timeout=10) as reply:
        return json.loads(reply.read())["models"][0]


def probe(base: str, model: str, concurrencies: list[int], seconds: float, p99_ms: float,
          min_gain: float = 0.05, texts: int = 2000, seed: int = 12, log=print) -> tuple[list[Step], Step | None]:
    """Steps in rising concurrency until one misses the p99 target or stops adding throughput."""
    rng = random.Random(seed)
    corpus = [sample_text(rng) for _ in range(texts)]
    steps: list[Step] = []
    for c in concurrencies:
        step = asyncio.run(run_step(base, model, corpus, c, seconds))
        steps.append(step)
        log(f"c={c:<4} {step.requests_per_s:7.1f} req/s  p99 {step.p99_ms:7.1f} ms  in flight {step.in_flight:5.1f}"
            f"  queued tokens {step.queued_tokens:7.1f}  cpu {step.cpu_cores if step.cpu_cores is not None else '-'}"
            f"  errors {step.errors}")
        if find_knee(steps, p99_ms, min_gain) is not steps[-1]:
            break
    return steps, find_knee(steps, p99_ms, min_gain)


def render(steps: list[Step], knee: Step | None, p99_ms: float, cpu_request: float | None) -> str:
    lines = ["| concurrency | req/s | p99 ms | in flight | queued tokens | CPU cores |", "|---|---|---|---|---|---|"]
    for s in steps:
        cpu = f"{s.cpu_cores:.2f}" if s.cpu_cores is not None else "-"
        mark = " (knee)" if s is knee else ""
        lines.append(f"| {s.concurrency}{mark} | {s.requests_per_s:.1f} | {s.p99_ms:.1f} | {s.in_flight:.1f} | "
                     f"{s.queued_tokens:.0f} | {cpu} |")
    if knee is None:
        lines.append(f"\nNo step met p99 <= {p99_ms:g} ms: the target is below one request's latency on this pod.")
        return "\n".join(lines)
    r = recipe(knee, cpu_request)
    lines += ["", f"Knee at p99 <= {p99_ms:g} ms: {knee.requests_per_s:.1f} req/s at concurrency {knee.concurrency}, "
              f"{knee.queued_tokens:.0f} queued tokens.",
              f"- KPA (Serverless): containerConcurrency: {r.container_concurrency}, scaleTarget: {r.kpa_target}, "
              f"scaleMetric: concurrency; --max_concurrent_requests >= {r.container_concurrency}",
              f"- KEDA threshold / Prometheus-adapter averageValue (hfserve_queue_tokens per pod, {TOKEN_HEADROOM:g} x the "
              f"knee's): {r.keda_threshold_tokens}",
              "- HPA on CPU: scaleTarget " + (f"{r.hpa_cpu_utilization} (% of a {cpu_request:g}-CPU request)"
                                            if r.hpa_cpu_utilization else "n/a (pass --cpu_request)")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="the runtime's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--model", help="model name (default: the first of GET /v1/models)")
    parser.add_argument("--p99_ms", type=float, default=250.0)
    parser.add_argument("--concurrency", default="1,2,4,8,16,32,64", help="the steps, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per step")
    parser.add_argument("--min_gain", type=float, default=0.05)
    parser.add_argument("--cpu_request", type=float, help="the pod's CPU request in cores (for the HPA value)")
    parser.add_argument("--json", help="also write the steps and the recipe here")
    args = parser.parse_args(argv)
    base = args.target.rstrip("/")
    model = args.model or model_name(base)
    steps, knee = probe(base, model, [int(c) for c in args.concurrency.split(",")], args.seconds, args.p99_ms,
                        args.min_gain)
    print(render(steps, knee, args.p99_ms, args.cpu_request))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": [asdict(s) for s in steps],
                       "recipe": asdict(recipe(knee, args.cpu_request)) if knee else None}, f, indent=2)
    return 0 if knee else 1


if __name__ == "__main__":
    sys.exit(main())
