"""Launcher of the Triton container: `python -m hfserve.triton` (console script `hfserve-triton`).

Builds the model repository from --model_dir (in a child process, so this long-lived supervisor never imports
torch), optionally exports the tokenizer files, then runs tritonserver in its own process group:
- SIGTERM/SIGINT: drain (in-flight requests finish, new ones are refused), stop Triton, exit with its status;
  a second signal kills at once;
- Triton dies by itself: kill what is left of its group (Python-backend workers), remove its /dev/shm segments,
  exit with Triton's status (128+N when killed by signal N).
Generative checkpoints are refused at start-up (exit status 3).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..drain_delay import default_delay_s
from .local_server import TritonNotFound, find_triton
from .repository import (
    EXIT_GENERATIVE,
    GenerativeTaskRefused,
    add_repository_args,
    check_encoder_task,
    native_onnx_backend_available,
)
from .supervisor import ADMIN_HEADER, TritonProcess

log = logging.getLogger("hfserve.triton")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hfserve.triton", allow_abbrev=False,
                                     description="Serve a Hugging Face encoder checkpoint with Triton (Python backend)")
    add_repository_args(parser)
    parser.add_argument("--repository_dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "hfserve-triton-repo")
    parser.add_argument("--tokenizer_export_dir", type=Path, default=None,
                        help="copy the tokenizer and config files there (for the transformer container)")
    parser.add_argument("--bind_address", default="0.0.0.0")
    parser.add_argument("--http_port", type=int, default=8000)
    parser.add_argument("--grpc_port", type=int, default=8001)
    parser.add_argument("--metrics_port", type=int, default=8002)
    parser.add_argument("--exit_timeout_s", type=int, default=20,
                        help="longest SIGTERM drain; keep it under the pod's termination grace period")
    parser.add_argument("--drain_quiet_s", type=float, default=1.0,
                        help="on SIGTERM, keep serving until no request has arrived for this long (the transformer "
                             "beside us drains its own in-flight requests through Triton), then unload and stop")
    parser.add_argument("--drain_delay_s", type=float, default=None,
                        help="on SIGTERM, keep serving at least this long first (as the transformer does; default 5, "
                             "0 under Knative, whose queue-proxy drains before SIGTERM)")
    parser.add_argument("--tritonserver", default=None,
                        help="tritonserver binary (default: on PATH, else the nvidia-pytriton wheel's copy)")
    parser.add_argument("--log_verbose", type=int, default=0)
    parser.add_argument("--onnx_backend", choices=["auto", "native", "python"], default="auto",
                        help="with --engine onnx: Triton's onnxruntime backend (native), or the Python backend "
                             "running ONNX Runtime; auto: native when the Triton install has backends/onnxruntime")
    return parser


def triton_command(binary: Path, backend_dir: Path | None, args, shm_prefix: str, admin_token: str,
                   gpu: bool) -> list[str]:
    command = [
        str(binary),
        f"--model-repository={args.repository_dir}",
        "--model-control-mode=explicit",
        f"--load-model={args.model_name}",
        "--disable-auto-complete-config",
        f"--http-address={args.bind_address}",
        f"--grpc-address={args.bind_address}",
        f"--metrics-address={args.bind_address}",
        f"--http-port={args.http_port}",
        f"--grpc-port={args.grpc_port}",
        f"--metrics-port={args.metrics_port}",
        f"--exit-timeout-secs={max(1, args.exit_timeout_s)}",
        f"--http-restricted-api=model-repository:{ADMIN_HEADER}={admin_token}",
        f"--grpc-restricted-protocol=model-repository:{ADMIN_HEADER}={admin_token}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--log-verbose={args.log_verbose}",
    ]
    if backend_dir is not None:
        command.append(f"--backend-directory={backend_dir}")
    if not gpu:
        command += ["--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
    return command


def resolve_onnx_backend(choice: str, install) -> str:
    if choice != "auto":
        return choice
    return "native" if native_onnx_backend_available(install.backend_dir, install.binary) else "python"


def build_repository_in_child(args, onnx_backend: str = "python") -> tuple[int, dict]:
    argv = [sys.executable, "-m", "hfserve.triton.repository",
            "--model_name", args.model_name, "--model_dir", str(args.model_dir),
            "--repository_dir", str(args.repository_dir), "--dtype", args.dtype, "--device", args.device,
            "--max_batch_size", str(args.max_batch_size),
            "--preferred_batch_sizes", ",".join(str(b) for b in args.preferred_batch_sizes),
            "--max_queue_delay_us", str(args.max_queue_delay_us), "--instance_count", str(args.instance_count),
            "--engine", args.engine, "--quantize", args.quantize, "--onnx_backend", onnx_backend]
    if args.onnx_cache_dir:
        argv += ["--onnx_cache_dir", str(args.onnx_cache_dir)]
    if args.task:
        argv += ["--task", args.task]
    if args.trust_remote_code:
        argv.append("--trust_remote_code")
    if args.max_batch_tokens:
        argv += ["--max_batch_tokens", str(args.max_batch_tokens)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run(argv, stdout=subprocess.PIPE, env=env, text=True)
    if result.returncode != 0:
        return result.returncode, {}
    return 0, json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        check_encoder_task(args.model_dir, args.task)
    except GenerativeTaskRefused as exc:
        log.error("%s", exc)
        return EXIT_GENERATIVE
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    try:
        install = find_triton(args.tritonserver)
    except TritonNotFound as exc:
        log.error("%s", exc)
        return 2
    if args.tokenizer_export_dir:
        copied = export_tokenizer_files_logged(args.model_dir, args.tokenizer_export_dir)
        log.info("exported %d tokenizer/config files to %s", copied, args.tokenizer_export_dir)
    status, built = build_repository_in_child(args, resolve_onnx_backend(args.onnx_backend, install))
    if status:
        return status
    log.info("model repository %s/%s: %s", args.repository_dir, args.model_name, built)

    shm_prefix, admin_token = TritonProcess.new_identity()
    host = "127.0.0.1" if args.bind_address in ("0.0.0.0", "::", "[::]", "") else args.bind_address
    triton = TritonProcess(
        triton_command(install.binary, install.backend_dir, args, shm_prefix, admin_token,
                       gpu=built.get("kind") == "KIND_GPU"),
        install.env, f"http://{host}:{args.http_port}", args.model_name, shm_prefix, admin_token,
        float(args.exit_timeout_s))

    signals: list[int] = []

    def on_signal(signum, _frame):
        signals.append(signum)
        if len(signals) > 1:  # second signal: no more waiting
            triton.kill_group()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    triton.start()
    workers: set[int] = set()
    next_worker_check = 0.0
    try:
        while True:
            if signals:
                log.info("received %s", signal.Signals(signals[0]).name)
                delay_s = default_delay_s() if args.drain_delay_s is None else args.drain_delay_s
                return triton.drain(quiet_s=args.drain_quiet_s, delay_s=delay_s)
            if triton.poll() is not None:
                log.error("tritonserver exited with status %s", triton.proc.returncode)
                return triton.stop()
            if triton.ready_at is None:
                if triton.check_ready():
                    workers = triton.backend_workers()
            elif time.monotonic() >= next_worker_check:  # a /proc scan, twice a second
                next_worker_check = time.monotonic() + 0.5
                if workers - triton.backend_workers():
                    # Triton marks a model whose stub died "not healthy" and does not restart the stub, while the
                    # model still reports ready: only a new container brings it back, so exit as a crash would.
                    log.error("a Python-backend stub of %s died; stopping so the container restarts",
                              args.model_name)
                    triton.stop()
                    return 1
            time.sleep(0.1)
    finally:
        triton.stop()


def export_tokenizer_files_logged(model_dir: Path, export_dir: Path) -> int:
    from .export import export_tokenizer_files

    return len(export_tokenizer_files(model_dir, export_dir))


if __name__ == "__main__":
    sys.exit(main())
