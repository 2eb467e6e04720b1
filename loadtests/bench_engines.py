"""`make bench-engines`: the engines side by side in one run: torch float32, ONNX Runtime float32, ONNX int8.

For each engine: its raw in-process forward (batch = concurrency) and the kserve-huggingface runtime serving
it (optionally the Triton runtime too), each concurrency measured back to back across engines, so drift on a
shared machine hits them alike. Ratios are against torch float32 at the same concurrency in the same run.
Reuses `loadtests.bench` (client, targets, 16-token texts). Output: stdout and reports/bench/engines.md|json.
"""

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from hfserve.engine.loading import load_encoder_engine
from hfserve.packaged_model import packaged_model_dir
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer

from devkit.processes import ServerProcess, free_port, huggingface_command

from .bench import MODEL, HuggingfaceTarget, Row, TritonTarget, measure_served, sixteen_token_texts
from .corpus import sample_text
from .peers import PEERS

# name -> command-line arguments of either runtime
ENGINES = {
    "torch": (),
    "onnx": ("--engine", "onnx"),
    "onnx-int8": ("--engine", "onnx", "--quantize", "int8"),
}


def mixed_texts(count: int) -> list[str]:
    rng = random.Random(7)
    return [sample_text(rng) for _ in range(count)]


class EngineHuggingfaceTarget(HuggingfaceTarget):
    def __init__(self, model_dir: Path, logs: Path, engine: str, cache_dir: Path):
        self.name = f"kserve-huggingface [{engine}]"
        self.http_port = free_port()
        command = huggingface_command(model_dir, MODEL, self.http_port, free_port(), *ENGINES[engine],
                                      "--onnx_cache_dir", str(cache_dir))
        self.server = ServerProcess(command, logs / f"huggingface-{engine}.log")


class EngineTritonTarget(TritonTarget):
    def __init__(self, model_dir: Path, logs: Path, engine: str, cache_dir: Path):
        super().__init__(model_dir, logs / f"triton-{engine}", (*ENGINES[engine], "--onnx_cache_dir", str(cache_dir)))
        self.name = f"kserve-huggingface-triton [{engine}]"


def load_engine(model_dir: Path, engine: str, cache_dir: Path):
    args = dict(zip(ENGINES[engine][::2], ENGINES[engine][1::2]))
    return load_encoder_engine(model_dir, engine=args.get("--engine", "torch"), device="cpu",
                               quantize=args.get("--quantize", "none"), onnx_cache_dir=cache_dir)


def raw_forward(model, model_dir: Path, engine: str, texts: list[str], batch: int, seconds: float) -> Row:
    options = TokenizerOptions()
    encoder = TextEncoder(load_tokenizer(model_dir, options), 256, options, model.input_names)
    inputs = encoder.pad(encoder.encode(texts[:batch]))
    for _ in range(3):
        model.forward(inputs)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        model.forward(inputs)
        times.append(time.perf_counter() - start)
    return Row(f"raw forward [{engine}]", batch, batch / statistics.mean(times),
               1000 * float(np.percentile(times, 50)), 1000 * float(np.percentile(times, 99)))


def render(rows: list[Row], corpus: str, peer: str | None = None) -> str:
    """One table; ratios against torch fp32 of the same kind, and against `peer` when one ran beside ours."""
    head = "| target | concurrency | req/s | p50 ms | p99 ms | avg batch | vs torch |" + (f" vs {peer} |" if peer else "")
    lines = [f"corpus: {corpus}", "", head, "|" + "---|" * (head.count("|") - 1)]
    reference, peers = {}, {}
    for row in rows:
        kind = row.target.split(" [")[0]
        if row.target.endswith("[torch]"):
            reference[(kind, row.concurrency)] = row.requests_per_s
        if peer and row.target == peer:
            peers[row.concurrency] = row.requests_per_s
    for row in sorted(rows, key=lambda r: (r.target.split(" [")[0], r.concurrency, r.target)):
        base = reference.get((row.target.split(" [")[0], row.concurrency))
        ratio = f"{row.requests_per_s / base:.2f}" if base else "-"
        batch = f"{row.avg_batch:.1f}" if row.avg_batch is not None else "-"
        line = (f"| {row.target} | {row.concurrency} | {row.requests_per_s:.1f} | {row.p50_ms:.2f} | "
                f"{row.p99_ms:.2f} | {batch} | {ratio} |")
        if peer:
            other = peers.get(row.concurrency)
            line += f" {row.requests_per_s / other:.2f} |" if other and not row.target.startswith("raw") else " - |"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engines", default="torch,onnx,onnx-int8", help=f"from {', '.join(ENGINES)}")
    parser.add_argument("--runtimes", default="huggingface", help="huggingface and/or triton")
    parser.add_argument("--corpus", default="uniform", choices=["uniform", "mixed"],
                        help="uniform: 16-token texts (make bench's); mixed: the locust corpus' length mix")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per served point")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--peers", default="", help="peer servers run beside ours: infinity (loadtests/peers.py)")
    parser.add_argument("--onnx_cache_dir", default=None, help="default: <out>/onnx-cache")
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(f"unknown engines {unknown}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.onnx_cache_dir) if args.onnx_cache_dir else out / "onnx-cache"
    model_dir = packaged_model_dir()
    texts = sixteen_token_texts(model_dir, 64) if args.corpus == "uniform" else mixed_texts(512)
    classes = {"huggingface": EngineHuggingfaceTarget, "triton": EngineTritonTarget}
    rows: list[Row] = []
    models = {e: load_engine(model_dir, e, cache) for e in engines}  # exports the graphs once, before the servers
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(classes[runtime](model_dir, out, engine, cache))
                   for runtime in args.runtimes.split(",") for engine in engines]
        peers = [stack.enter_context(PEERS[name](model_dir, out)) for name in args.peers.split(",") if name]
        targets += peers
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            if args.corpus == "uniform":
                rows += [raw_forward(models[e], model_dir, e, texts, concurrency, args.seconds / 2) for e in engines]
            rows += [measure_served(t, texts, concurrency, args.seconds, args.corpus) for t in targets]
    table = render(rows, args.corpus, peers[0].name if peers else None)
    header = (f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, {args.seconds:.0f} s per served point, "
              f"command: python -m loadtests.bench_engines {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(header + "\n\n" + table)
    (out / f"engines-{args.corpus}.md").write_text(header + "\n\n" + table + "\n")
    (out / f"engines-{args.corpus}.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
