"""`make time-to-ready`: process start -> first HTTP 200 on a predict request, per runtime and engine, from a local
folder or an s3:// URI (moto's S3 server on loopback), with a cold and a warm cache; and runtime 1's first request
after ready against its steady-state latency, with and without the warm-up. Table: docs/lifecycle.md.

Each case starts the runtime as `make serve` / `make serve-triton` would (runtime 1: `python -m hfserve.huggingface`;
Triton: devkit/triton_pair.py, launcher + transformer), polls POST /v1/models/<name>:predict every 50 ms from the
moment the process is spawned, and stops it. "cold" is an empty cache folder (HFSERVE_CACHE_DIR: the download, and
for --engine onnx the exported graph), "warm" the same folder again. Writes reports/time-to-ready/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from hfserve.packaged_model import packaged_model_dir

from devkit.ports import release, reserve_ports
from devkit.processes import die_with_parent
from devkit.storage_servers import MotoS3
from devkit.triton_pair import TritonPair

MODEL = "minilm"
# ~120 tokens: the steady-state check runs a mid-length bucket, not the 8-token one.
TEXT = " ".join(["KServe serves Hugging Face models from any storage, ready fast and only when it can answer."] * 6)
WITHOUT_WARMUP = ("import runpy, hfserve.engine.warmup as w; w.warm_up = lambda *a, **k: 0.0; "
                  "runpy.run_module('hfserve.huggingface', run_name='__main__')")


def post_predict(url: str, timeout: float = 60.0) -> int | None:
    body = json.dumps({"instances": [TEXT]}).encode()
    request = urllib.request.Request(f"{url}/v1/models/{MODEL}:predict", data=body,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def wait_first_200(url: str, started: float, alive, timeout_s: float) -> tuple[float, float]:
    """Seconds from `started` to the first 200, and how long that first answered request took."""
    while time.monotonic() - started < timeout_s:
        if not alive():
            raise RuntimeError("the server exited before answering")
        sent = time.monotonic()
        if post_predict(url, timeout=60) == 200:
            now = time.monotonic()
            return now - started, now - sent
        time.sleep(0.05)
    raise TimeoutError(f"no 200 from {url} within {timeout_s:.0f} s")


def latency_s(url: str) -> float:
    started = time.perf_counter()
    assert post_predict(url) == 200
    return time.perf_counter() - started


def runtime1(model_dir: str, engine: str, env: dict, logs: Path, warmup: bool = True, steady: int = 0) -> dict:
    http_port, grpc_port = reserve_ports(2)
    url = f"http://127.0.0.1:{http_port}"
    args = ["--model_name", MODEL, "--model_dir", model_dir, "--engine", engine, "--bind_address", "127.0.0.1",
            "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    head = [sys.executable, "-m", "hfserve.huggingface"] if warmup else [sys.executable, "-c", WITHOUT_WARMUP]
    log = open(logs / f"runtime1-{http_port}.log", "ab")
    started = time.monotonic()
    process = subprocess.Popen([*head, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, preexec_fn=die_with_parent)
    try:
        ready_s, first_s = wait_first_200(url, started, lambda: process.poll() is None, 900)
        result = {"ready_s": ready_s}
        if steady:  # the server listens only once loaded (and warmed up): the first 200 is the first request
            result["first_after_ready_s"] = first_s
            result["steady_s"] = statistics.median(latency_s(url) for _ in range(steady))
        return result
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        release(http_port, grpc_port)


def triton(model_dir: str, engine: str, env: dict, logs: Path) -> dict:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # TritonPair starts its processes with this process's environment
    try:
        pair = TritonPair(model_dir, MODEL, log_dir=logs, ready_timeout_s=900,
                          triton_args=("--engine", engine), transformer_args=())
        started = time.monotonic()
        pair.start()
        try:
            return {"ready_s": wait_first_200(pair.http_url, started, lambda: not pair.exited(), 900)[0]}
        finally:
            pair.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/time-to-ready"))
    parser.add_argument("--runtimes", default="huggingface,triton")
    parser.add_argument("--steady", type=int, default=20, help="requests timed for runtime 1's steady state")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hfserve-ttr-"))
    logs = args.out / "logs"
    logs.mkdir(exist_ok=True)
    local = str(packaged_model_dir())
    s3 = MotoS3(logs).start()
    rows = []
    try:
        uri = s3.upload_folder(Path(local), MODEL)
        base = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HFSERVE_DRAIN_DELAY_S": "0",
                **s3.env}
        for runtime in args.runtimes.split(","):
            run = runtime1 if runtime == "huggingface" else triton
            for engine in ("torch", "onnx"):
                for source, model_dir in (("local", local), ("s3", uri)):
                    cache = work / f"{runtime}-{engine}-{source}"
                    for state in ("cold", "warm"):
                        if source == "local" and engine == "torch" and state == "warm":
                            continue  # nothing cached: the same as cold
                        env = {**base, "HFSERVE_CACHE_DIR": str(cache)}
                        extra = {"steady": args.steady} if run is runtime1 else {}
                        result = run(model_dir, engine, env, logs, **extra)
                        row = {"runtime": runtime, "engine": engine, "source": source,
                               "cache": state if (source == "s3" or engine == "onnx") else "-", **result}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
            if runtime == "huggingface":
                result = runtime1(local, "torch", {**base, "HFSERVE_CACHE_DIR": str(work / "nowarm")}, logs,
                                  warmup=False, steady=args.steady)
                row = {"runtime": "huggingface (warm-up off)", "engine": "torch", "source": "local", "cache": "-",
                       **result}
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print("\n| runtime | engine | model from | cache | start -> first 200 (s) | first after ready / steady (ms) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ratio = (f"{row['first_after_ready_s'] * 1000:.0f} / {row['steady_s'] * 1000:.0f}"
                 if "steady_s" in row else "")
        print(f"| {row['runtime']} | {row['engine']} | {row['source']} | {row['cache']} | {row['ready_s']:.1f} | "
              f"{ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
