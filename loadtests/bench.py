"""`make bench`: served throughput and latency of each runtime, on two corpora, beside same-run references.

Corpora (each request carries one text; concurrency is the number of clients with a request in flight):
- uniform: distinct texts of exactly 16 tokens, beside the raw in-process model forward at batch = concurrency;
- mixed: the locust corpus (loadtests/corpus.py: ~55% queries, ~30% sentences, ~12% paragraphs, ~3% documents
  truncated at the model's 256 tokens), what users send.
Targets: each runtime with its defaults, and the same runtime with `--max_batch_size 1` (no batching) as the
reference batching must never fall below. Every point of one concurrency and corpus is measured back to back,
so drift on a shared machine hits all alike. Results go to stdout (markdown) and reports/bench/.
Quick run: `--runtimes huggingface,huggingface-nobatch --corpora mixed --concurrency 32 --seconds 5`.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hfserve.engine.encoder import EncoderEngine  # noqa: E402
from hfserve.packaged_model import packaged_model_dir  # noqa: E402
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer  # noqa: E402

from devkit.processes import ServerProcess, free_port, huggingface_command  # noqa: E402

from .closed_loop import closed_loop, v1_body  # noqa: E402
from .corpus import sample_text  # noqa: E402
from .peers import PEERS  # noqa: E402

MODEL = "minilm"
WORDS = "the quick brown fox jumps over the lazy dog while a cat sleeps near warm fire".split()


@dataclass
class Row:
    target: str
    concurrency: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    avg_batch: float | None = None
    corpus: str = "uniform"
    padded_per_text: float | None = None  # token positions computed per text served (padding included)


def mixed_texts(count: int, seed: int = 12) -> list[str]:
    """The locust corpus's mix, one text per request, seeded."""
    import random

    rng = random.Random(seed)
    return [sample_text(rng) for _ in range(count)]


def sixteen_token_texts(model_dir: Path, count: int) -> list[str]:
    """Distinct texts of exactly 16 tokens ([CLS] + 14 words + [SEP]) for this tokenizer."""
    tokenizer = load_tokenizer(model_dir, TokenizerOptions())
    texts = []
    for i in range(count):
        words = WORDS[i % len(WORDS):] + WORDS[: i % len(WORDS)]
        text = " ".join(words[:14])
        assert len(tokenizer(text)["input_ids"]) == 16, text
        texts.append(text)
    return texts


class RawForward:
    """The model's forward pass in this process, on the same padded 16-token batches the servers run."""

    def __init__(self, model_dir: Path, texts: list[str]):
        self.engine = EncoderEngine.load(model_dir)
        options = TokenizerOptions()
        self.encoder = TextEncoder(load_tokenizer(model_dir, options), 256, options, self.engine.input_names)
        self.texts = texts

    def measure(self, batch: int, seconds: float) -> Row:
        inputs = self.encoder.pad(self.encoder.encode(self.texts[:batch]))
        for _ in range(3):
            self.engine.forward(inputs)
        times = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            self.engine.forward(inputs)
            times.append(time.perf_counter() - start)
        return Row(f"raw forward (batch {batch})", batch, batch / statistics.mean(times),
                   1000 * float(np.percentile(times, 50)), 1000 * float(np.percentile(times, 99)))


def raw_mixed(raw: RawForward, texts: list[str], window: int, rounds: int) -> list[Row]:
    """The three ways to run `window` queued mixed-corpus texts, timed in one process in rotating order (so load
    on a shared machine hits all alike): one padded batch (the old batcher), length-planned passes (the batcher
    now, engine/passes.py), and one text per pass (no batching)."""
    from hfserve.engine.passes import limits_for_device, plan_passes

    limits = limits_for_device("cpu", window)
    encode, forward = raw.encoder.encode, raw.engine.forward

    def padded(encoded):
        forward(raw.encoder.pad(encoded))

    def planned(encoded):
        for group in plan_passes([len(e) for e in encoded], limits):
            forward(raw.encoder.pad([encoded[i] for i in group]))

    def one_by_one(encoded):
        for e in encoded:
            forward(raw.encoder.pad([e]))

    strategies = {"one padded batch": padded, "length-planned passes": planned, "one text per pass": one_by_one}
    spent = dict.fromkeys(strategies, 0.0)
    work = {name: [0, 0] for name in strategies}  # padded tokens, passes: what each strategy computes
    for r in range(rounds):
        encoded = encode(texts[r * window:(r + 1) * window])
        lengths = [len(e) for e in encoded]
        groups = plan_passes(lengths, limits)
        for name, (tokens, passes) in {"one padded batch": (window * max(lengths), 1),
                                       "length-planned passes": (sum(len(g) * max(lengths[i] for i in g)
                                                                     for g in groups), len(groups)),
                                       "one text per pass": (sum(lengths), window)}.items():
            work[name][0] += tokens
            work[name][1] += passes
        names = list(strategies)
        for name in names[r % 3:] + names[:r % 3]:
            start = time.perf_counter()
            strategies[name](encoded)
            spent[name] += time.perf_counter() - start
    return [Row(f"raw forward, {window} mixed texts, {name}", window, window * rounds / seconds, 0.0, 0.0,
                avg_batch=window * rounds / work[name][1], corpus="mixed",
                padded_per_text=work[name][0] / (window * rounds)) for name, seconds in spent.items()]


async def drive(url: str, texts: list[str], concurrency: int, seconds: float, body=v1_body) -> Row:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await closed_loop(session, url, texts, concurrency, time.perf_counter() + 1.0, body)
        start = time.perf_counter()
        errors = await closed_loop(session, url, texts, concurrency, start + seconds, body, latencies)
        elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{errors} requests failed against {url}")
    return Row("", concurrency, len(latencies) / elapsed, 1000 * float(np.percentile(latencies, 50)),
               1000 * float(np.percentile(latencies, 99)))


class HuggingfaceTarget:
    def __init__(self, model_dir: Path, logs: Path, name: str = "kserve-huggingface", extra: tuple[str, ...] = ()):
        self.name = name
        self.http_port = free_port()
        command = huggingface_command(model_dir, MODEL, self.http_port, free_port(), *extra)
        self.server = ServerProcess(command, logs / f"{name}.log")

    def __enter__(self):
        self.server.start()
        self.server.wait_http(f"http://127.0.0.1:{self.http_port}/v2/models/{MODEL}/ready", timeout=180)
        self.url = f"http://127.0.0.1:{self.http_port}/v1/models/{MODEL}:predict"
        return self

    def __exit__(self, *exc):
        self.server.stop()

    def batch_stats(self) -> tuple[float, float]:
        """(forward passes, texts) so far, from the runtime's hfserve_batch_size histogram."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics").read().decode()
        count = re.search(r'hfserve_batch_size_count{model_name="%s"} ([0-9.e+]+)' % MODEL, text)
        total = re.search(r'hfserve_batch_size_sum{model_name="%s"} ([0-9.e+]+)' % MODEL, text)
        return (float(count.group(1)), float(total.group(1))) if count else (0.0, 0.0)

    def padded_tokens(self) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics").read().decode()
        total = re.search(r'hfserve_batch_padded_tokens_sum{model_name="%s"} ([0-9.e+]+)' % MODEL, text)
        return float(total.group(1)) if total else 0.0


class TritonTarget:
    def __init__(self, model_dir: Path, logs: Path, triton_args: tuple[str, ...] = (),
                 name: str = "kserve-huggingface-triton"):
        from devkit.triton_pair import TritonPair  # the two processes of the triton runtime, on loopback

        self.name = name
        (logs / name).mkdir(parents=True, exist_ok=True)
        self.pair = TritonPair(model_dir, MODEL, log_dir=logs / name, triton_args=triton_args)

    def __enter__(self):
        self.pair.__enter__()
        self.url = f"{self.pair.http_url}/v1/models/{MODEL}:predict"
        return self

    def __exit__(self, *exc):
        self.pair.__exit__(*exc)

    def batch_stats(self) -> tuple[float, float]:
        """(executions, inferences) so far, from Triton's statistics API."""
        return self.pair.triton_batch_stats()


def measure_served(target, texts: list[str], concurrency: int, seconds: float, corpus: str) -> Row:
    padded = getattr(target, "padded_tokens", lambda: None)
    before, tokens_before = target.batch_stats(), padded()
    row = asyncio.run(drive(target.url, texts, concurrency, seconds, getattr(target, "body", v1_body)))
    after, tokens_after = target.batch_stats(), padded()
    row.target, row.corpus = target.name, corpus
    runs = after[0] - before[0]
    row.avg_batch = (after[1] - before[1]) / runs if runs else None
    if tokens_before is not None and after[1] > before[1]:
        row.padded_per_text = (tokens_after - tokens_before) / (after[1] - before[1])
    return row


def render_uniform(raw: dict[int, Row], served: list[Row]) -> str:
    lines = ["| target | concurrency | req/s | p50 ms | p99 ms | avg batch | vs raw | vs no batching |",
             "|---|---|---|---|---|---|---|---|"]
    for batch, row in raw.items():
        lines.append(f"| {row.target} | - | {row.requests_per_s:.1f} texts/s | {row.p50_ms:.2f} | "
                     f"{row.p99_ms:.2f} | {batch} | 1.00 | - |")
    lines += _served_lines(served, raw)
    lines.append("")
    for row in served:
        if row.target in REFERENCES.values():
            continue
        if row.concurrency == 1 and 1 in raw:
            lines.append(f"- {row.target}: p50 at concurrency 1 is {row.p50_ms - raw[1].p50_ms:+.2f} ms "
                         f"beside the raw batch-1 forward (target: within 3 ms)")
        if row.concurrency == 32 and 32 in raw:  # the target is stated at concurrency 32
            ratio = row.requests_per_s / raw[row.concurrency].requests_per_s
            lines.append(f"- {row.target}: throughput at concurrency {row.concurrency} is {ratio:.2f} of the raw "
                         f"batched forward (target: at least 0.75)")
    return "\n".join(lines)


def render_raw_mixed(rows: list[Row]) -> str:
    if not rows:
        return ""
    lines = ["| raw forward, same texts | texts/s | vs one text per pass | avg pass | padded tokens/text |",
             "|---|---|---|---|---|"]
    alone = rows[-1].requests_per_s
    lines += [f"| {row.target} | {row.requests_per_s:.1f} | {row.requests_per_s / alone:.2f} | {row.avg_batch:.1f} | "
              f"{row.padded_per_text:.0f} |" for row in rows]
    return "\n".join(lines) + "\n\n"


def render_mixed(served: list[Row]) -> str:
    lines = ["| target | concurrency | req/s | p50 ms | p99 ms | avg batch | padded tokens/text | vs no batching |",
             "|---|---|---|---|---|---|---|---|"]
    lines += _served_lines(served, None)
    lines.append("")
    for row in served:
        reference = _reference(row, served)
        if reference is not None:
            verdict = "holds" if row.requests_per_s >= reference.requests_per_s else "VIOLATED"
            lines.append(f"- {row.target} at concurrency {row.concurrency}: {row.requests_per_s:.1f} req/s vs "
                         f"{reference.requests_per_s:.1f} without batching (x{row.requests_per_s / reference.requests_per_s:.2f}), "
                         f"p99 {row.p99_ms:.0f} vs {reference.p99_ms:.0f} ms: never slower than no batching {verdict}")
    return "\n".join(lines)


# A runtime's no-batching twin: the same-run reference its batching must never fall below.
REFERENCES = {"kserve-huggingface": "kserve-huggingface --max_batch_size 1",
              "kserve-huggingface-triton": "kserve-huggingface-triton --max_batch_size 1"}


def _reference(row: Row, served: list[Row]) -> Row | None:
    name = REFERENCES.get(row.target)
    return next((r for r in served if r.target == name and r.concurrency == row.concurrency
                 and r.corpus == row.corpus), None)


def _served_lines(served: list[Row], raw: dict[int, Row] | None) -> list[str]:
    lines = []
    for row in served:
        batch = f"{row.avg_batch:.1f}" if row.avg_batch is not None else "-"
        reference = _reference(row, served)
        vs_ref = f"{row.requests_per_s / reference.requests_per_s:.2f}" if reference else "-"
        line = f"| {row.target} | {row.concurrency} | {row.requests_per_s:.1f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} | {batch} |"
        if raw is not None:
            ref = raw.get(row.concurrency)
            line += f" {row.requests_per_s / ref.requests_per_s:.2f} |" if ref else " - |"
        else:
            line += f" {row.padded_per_text:.0f} |" if row.padded_per_text is not None else " - |"
        lines.append(f"{line} {vs_ref} |")
    return lines


def make_targets(args, model_dir: Path, out: Path) -> dict:
    triton_args = tuple(args.triton_args.split())
    return {
        "huggingface": lambda: HuggingfaceTarget(model_dir, out),
        "huggingface-nobatch": lambda: HuggingfaceTarget(model_dir, out, REFERENCES["kserve-huggingface"],
                                                         ("--max_batch_size", "1")),
        "triton": lambda: TritonTarget(model_dir, out, triton_args),
        "triton-nobatch": lambda: TritonTarget(model_dir, out, (*triton_args, "--max_batch_size", "1"),
                                               REFERENCES["kserve-huggingface-triton"]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per served point")
    parser.add_argument("--runtimes", default="huggingface,huggingface-nobatch,triton,triton-nobatch",
                        help="any of huggingface, huggingface-nobatch, triton, triton-nobatch")
    parser.add_argument("--peers", default="", help="peer servers run beside ours: infinity (loadtests/peers.py)")
    parser.add_argument("--corpora", default="uniform,mixed", help="any of uniform, mixed")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-forward references")
    parser.add_argument("--raw-mixed-rounds", type=int, default=6,
                        help="windows of 32 mixed texts timed for the raw mixed-corpus reference")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--triton-args", default="", help='extra launcher arguments, e.g. "--max_queue_delay_us 0"')
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    corpora = args.corpora.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = packaged_model_dir()
    texts = {"uniform": sixteen_token_texts(model_dir, 64), "mixed": mixed_texts(2000)}
    raw_forward = None if args.no_raw else RawForward(model_dir, texts["uniform"])
    raw_mixed_rows = []
    if raw_forward is not None and "mixed" in corpora and args.raw_mixed_rounds > 0:
        raw_mixed_rows = raw_mixed(raw_forward, texts["mixed"], 32, args.raw_mixed_rounds)
    factories = make_targets(args, model_dir, out)
    raw: dict[int, Row] = {}
    served: list[Row] = []
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(factories[name]()) for name in args.runtimes.split(",")]
        targets += [stack.enter_context(PEERS[name](model_dir, out)) for name in args.peers.split(",") if name]
        # Each concurrency's points are measured back to back, so drift on a shared machine hits all alike.
        for concurrency in concurrencies:
            for corpus in corpora:
                if corpus == "uniform" and raw_forward is not None:
                    raw[concurrency] = raw_forward.measure(concurrency, args.seconds / 2)
                served += [measure_served(t, texts[corpus], concurrency, args.seconds, corpus) for t in targets]
    served.sort(key=lambda r: (r.target, r.concurrency))
    sections = []
    if "uniform" in corpora:
        sections.append("### Uniform corpus (16 tokens)\n\n" + render_uniform(raw, [r for r in served
                                                                                     if r.corpus == "uniform"]))
    if "mixed" in corpora:
        sections.append("### Mixed corpus (loadtests/corpus.py)\n\n" + render_raw_mixed(raw_mixed_rows)
                        + render_mixed([r for r in served if r.corpus == "mixed"]))
    header = (f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, {args.seconds:.0f} s per served point, "
              f"1-min load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after")
    report = header + "\n\n" + "\n\n".join(sections)
    print(report)
    (out / "bench.md").write_text(report + "\n")
    rows = [*raw.values(), *raw_mixed_rows, *served]
    (out / "bench.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
