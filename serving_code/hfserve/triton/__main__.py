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
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .. import config, storage
from ..config import RepositoryConfig
from ..drain_delay import default_delay_s
from ..engine.loading import check_weights
from .local_server import TritonNotFound, find_triton
from .repository import EXIT_GENERATIVE, GenerativeTaskRefused, check_encoder_task, resolve_onnx_backend
from .supervisor import ADMIN_HEADER, TritonProcess, remove_stale_segments

log = logging.getLogger("hfserve.triton")

# Triton's API groups that need the launcher's per-launch token (security review M3): every process in the pod
# reaches Triton's loopback ports, and the shared-memory API was the entry of NVIDIA's August 2025 RCE chain.
# Open: health, metadata, inference and statistics (read-only counts, which the drain and the batching tests read);
# model-config too on gRPC, where the transformer reads the model's inputs and outputs.
GRPC_RESTRICTED = ("model-repository", "shared-memory", "logging", "trace")
HTTP_RESTRICTED = (*GRPC_RESTRICTED, "model-config")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hfserve.triton", allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Serve a Hugging Face encoder checkpoint with Triton (Python backend)")
    config.add_to_parser(parser, *config.LAUNCHER_GROUPS, required=config.LAUNCHER_REQUIRED)
    parser.set_defaults(bind_address="127.0.0.1")  # security review L8: args replaced by KServe keep Triton local
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config.validate(*(config.from_namespace(group, args) for group in config.LAUNCHER_GROUPS))
    except config.ConfigError as exc:
        parser.error(str(exc))
    if args.bind_address not in LOOPBACK and not args.allow_remote_triton:
        parser.error(f"--bind_address {args.bind_address} would open Triton's ports beyond this host (pod); "
                     "add --allow_remote_triton if that is meant")
    return args


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
        f"--http-restricted-api={','.join(HTTP_RESTRICTED)}:{ADMIN_HEADER}={admin_token}",
        f"--grpc-restricted-protocol={','.join(GRPC_RESTRICTED)}:{ADMIN_HEADER}={admin_token}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--log-verbose={args.log_verbose}",
    ]
    if backend_dir is not None:
        command.append(f"--backend-directory={backend_dir}")
    if not gpu:
        command += ["--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false"]
    if args.triton_traces_endpoint:
        command += ["--trace-config=mode=opentelemetry", "--trace-config=rate=1", "--trace-config=level=TIMESTAMPS",
                    f"--trace-config=opentelemetry,url={args.triton_traces_endpoint}",
                    "--trace-config=opentelemetry,resource=service.name=triton"]
    return command


def build_repository_in_child(args, onnx_backend: str = "python") -> tuple[int, dict]:
    """Build the repository in a child process (torch stays out of this one); it reads the settings on stdin."""
    settings = dataclasses.replace(config.from_namespace(RepositoryConfig, args), onnx_backend=onnx_backend)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "hfserve.triton.repository", "--config", "-"],
                            input=settings.to_json(), stdout=subprocess.PIPE, env=env, text=True)
    if result.returncode != 0:
        return result.returncode, {}
    return 0, json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        args.model_dir = storage.prepare_model_dir(args.model_dir, args.model_cache_dir, args.model_init_timeout_s)
    except storage.StorageError as error:
        log.error("%s", error)
        return 2
    try:
        check_encoder_task(args.model_dir, args.task)
        check_weights(args.model_dir, args.allow_pickle_weights)
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
        try:
            copied = export_tokenizer_files_logged(args.model_dir, args.tokenizer_export_dir)
        except (ValueError, OSError) as exc:  # over the size cap, or an unreadable file
            log.error("cannot export the tokenizer files: %s", exc)
            return 2
        log.info("exported %d tokenizer/config files to %s", copied, args.tokenizer_export_dir)
    status, built = build_repository_in_child(args, resolve_onnx_backend(args.onnx_backend, install))
    if status:
        return status
    log.info("model repository %s/%s: %s", args.repository_dir, args.model_name, built)

    remove_stale_segments(own_pid_is_stale=True)  # before Triton makes ours: what earlier containers left
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
