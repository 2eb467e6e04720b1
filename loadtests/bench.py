"""`make bench`: served throughput and latency of each runtime beside the raw in-process model forward,
all measured in the same run on the same machine, with the ratios the targets are stated in.

Inputs are 16 tokens long (special tokens included). Each request carries one text; concurrency is the
number of clients with a request in flight. Results go to stdout (a markdown table) and reports/bench/.
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

from hfserve.devtools.processes import ServerProcess, free_port, huggingface_command  # noqa: E402
from hfserve.engine.encoder import EncoderEngine  # noqa: E402
from hfserve.packaged_model import packaged_model_dir  # noqa: E402
from hfserve.tasks.tokenization import TextEncoder, TokenizerOptions, load_tokenizer  # noqa: E402

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


async def drive(url: str, texts: list[str], concurrency: int, seconds: float) -> Row:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(index: int, deadline: float, record: bool):
            nonlocal errors
            i = index
            while time.perf_counter() < deadline:
                body = json.dumps({"instances": [texts[i % len(texts)]]})
                start = time.perf_counter()
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as reply:
                    await reply.read()
                    ok = reply.status == 200
                if record:
                    latencies.append(time.perf_counter() - start)
                    errors += not ok
                i += concurrency

        warm = time.perf_counter() + 1.0
        await asyncio.gather(*(client(c, warm, False) for c in range(concurrency)))
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(c, deadline, True) for c in range(concurrency)))
        elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{errors} requests failed against {url}")
    return Row("", concurrency, len(latencies) / elapsed, 1000 * float(np.percentile(latencies, 50)),
               1000 * float(np.percentile(latencies, 99)))


class HuggingfaceTarget:
    name = "kserve-huggingface"

    def __init__(self, model_dir: Path, logs: Path):
        self.http_port = free_port()
        command = huggingface_command(model_dir, MODEL, self.http_port, free_port())
        self.server = ServerProcess(command, logs / "huggingface.log")

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


class TritonTarget:
    name = "kserve-huggingface-triton"

    def __init__(self, model_dir: Path, logs: Path, triton_args: tuple[str, ...] = ()):
        from hfserve.triton.dev_serve import TritonPair  # the two processes of the triton runtime, on loopback

        self.pair = TritonPair(model_dir, MODEL, log_dir=logs, triton_args=triton_args)

    def __enter__(self):
        self.pair.__enter__()
        self.url = f"{self.pair.http_url}/v1/models/{MODEL}:predict"
        return self

    def __exit__(self, *exc):
        self.pair.__exit__(*exc)

    def batch_stats(self) -> tuple[float, float]:
        """(executions, inferences) so far, from Triton's statistics API."""
        return self.pair.triton_batch_stats()


def measure_served(target, texts: list[str], concurrency: int, seconds: float) -> Row:
    before = target.batch_stats()
    row = asyncio.run(drive(target.url, texts, concurrency, seconds))
    after = target.batch_stats()
    row.target = target.name
    runs = after[0] - before[0]
    row.avg_batch = (after[1] - before[1]) / runs if runs else None
    return row


def render(raw: dict[int, Row], served: list[Row]) -> str:
    lines = ["| target | concurrency | req/s | p50 ms | p99 ms | avg batch | vs raw |",
             "|---|---|---|---|---|---|---|"]
    for batch, row in raw.items():
        lines.append(f"| {row.target} | - | {row.requests_per_s:.1f} texts/s | {row.p50_ms:.2f} | "
                     f"{row.p99_ms:.2f} | {batch} | 1.00 |")
    for row in served:
        reference = raw[row.concurrency]
        ratio = row.requests_per_s / reference.requests_per_s
        batch = f"{row.avg_batch:.1f}" if row.avg_batch is not None else "-"
        lines.append(f"| {row.target} | {row.concurrency} | {row.requests_per_s:.1f} | {row.p50_ms:.2f} | "
                     f"{row.p99_ms:.2f} | {batch} | {ratio:.2f} throughput |")
    lines.append("")
    for row in served:
        if row.concurrency == 1:
            lines.append(f"- {row.target}: p50 at concurrency 1 is {row.p50_ms - raw[1].p50_ms:+.2f} ms "
                         f"beside the raw batch-1 forward (target: within 3 ms)")
        if row.concurrency == 32:  # the target is stated at concurrency 32
            ratio = row.requests_per_s / raw[row.concurrency].requests_per_s
            lines.append(f"- {row.target}: throughput at concurrency {row.concurrency} is {ratio:.2f} of the raw "
                         f"batched forward (target: at least 0.75)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point")
    parser.add_argument("--runtimes", default="huggingface,triton")
    parser.add_argument("--out", default="reports/bench")
    parser.add_argument("--triton-args", default="", help='extra launcher arguments, e.g. "--max_queue_delay_us 0"')
    args = parser.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = packaged_model_dir()
    texts = sixteen_token_texts(model_dir, 64)
    raw_forward = RawForward(model_dir, texts)
    classes = {"huggingface": HuggingfaceTarget,
               "triton": lambda m, o: TritonTarget(m, o, tuple(args.triton_args.split()))}
    raw: dict[int, Row] = {}
    served: list[Row] = []
    with contextlib.ExitStack() as stack:
        targets = [stack.enter_context(classes[name](model_dir, out)) for name in args.runtimes.split(",")]
        # Each concurrency's points are measured back to back, so drift on a shared machine hits all alike.
        for concurrency in concurrencies:
            raw[concurrency] = raw_forward.measure(concurrency, args.seconds / 2)
            served += [measure_served(t, texts, concurrency, args.seconds) for t in targets]
    served.sort(key=lambda r: (r.target, r.concurrency))
    table = render(raw, served)
    header = f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, {args.seconds:.0f} s per served point"
    print(header + "\n\n" + table)
    (out / "bench.md").write_text(header + "\n\n" + table + "\n")
    (out / "bench.json").write_text(json.dumps([asdict(r) for r in [*raw.values(), *served]], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
