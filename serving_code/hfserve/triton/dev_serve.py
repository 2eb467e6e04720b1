"""The kserve-huggingface-triton runtime locally: the Triton launcher and the transformer, on one address.

`make serve-triton`:
    python -m hfserve.triton.dev_serve --model_name minilm --model_dir DIR [--bind_address 127.0.0.1]
        [--port 8080] [--triton_http_port 8000] [--triton_grpc_port 8001] [--triton_metrics_port 8002]
        [extra launcher arguments...]
Ctrl-C / SIGTERM stops both (SIGTERM: each drains, then SIGKILL of their process groups); if either exits, the
other is stopped too and the exit status is the first one's.

Benchmarks and scripts:
    with TritonPair(model_dir, "minilm", log_dir=Path("logs")) as pair:   # free loopback ports, waits until ready
        pair.http_url, pair.grpc_target, pair.triton_http_url, pair.triton_grpc_target
        executions, inferences = pair.triton_batch_stats()

As in the pod, the launcher exports the tokenizer files and the transformer reads them from there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..devtools.ports import reserve_ports
from ..devtools.processes import http_status


class TritonPair:
    def __init__(self, model_dir, model_name: str = "minilm", log_dir: Path | None = None,
                 bind_address: str = "127.0.0.1", port: int | None = None,
                 triton_ports: tuple[int, int, int] | None = None, triton_args: tuple[str, ...] = (),
                 transformer_args: tuple[str, ...] = (), ready_timeout_s: float = 300.0):
        self.model_dir = str(model_dir)
        self.model_name = model_name
        self.bind_address = bind_address
        self.port, self.grpc_port = (port, port + 1) if port else reserve_ports(2)
        self.triton_http_port, self.triton_grpc_port, self.triton_metrics_port = triton_ports or reserve_ports(3)
        host = "127.0.0.1" if bind_address in ("0.0.0.0", "::") else bind_address
        self.http_url = f"http://{host}:{self.port}"
        self.grpc_target = f"{host}:{self.grpc_port}"
        self.triton_http_url = f"http://{host}:{self.triton_http_port}"
        self.triton_grpc_target = f"{host}:{self.triton_grpc_port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="hfserve-serve-triton-"))
        self.log_dir = Path(log_dir) if log_dir else None
        self.ready_timeout_s = ready_timeout_s
        export = self.workdir / "tokenizer"
        self.commands = {
            "triton": [sys.executable, "-m", "hfserve.triton", "--model_name", model_name,
                       "--model_dir", self.model_dir, "--repository_dir", str(self.workdir / "repository"),
                       "--tokenizer_export_dir", str(export), "--bind_address", bind_address,
                       "--http_port", str(self.triton_http_port), "--grpc_port", str(self.triton_grpc_port),
                       "--metrics_port", str(self.triton_metrics_port), *triton_args],
            "transformer": [sys.executable, "-m", "hfserve.transformer", "--model_name", model_name,
                            "--model_dir", str(export), "--predictor_host", self.triton_grpc_target,
                            "--bind_address", bind_address, "--http_port", str(self.port),
                            "--grpc_port", str(self.grpc_port), *transformer_args],
        }
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> "TritonPair":
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        for name, command in self.commands.items():
            output = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                output = open(self.log_dir / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen(command, env=env, start_new_session=True, stdout=output,
                                                    stderr=subprocess.STDOUT if output else None)
            if output:
                output.close()
        return self

    def exited(self) -> list[tuple[str, int]]:
        return [(name, p.returncode) for name, p in self.processes.items() if p.poll() is not None]

    def wait_ready(self) -> "TritonPair":
        deadline = time.monotonic() + self.ready_timeout_s
        while http_status(f"{self.http_url}/v2/health/ready") != 200:
            if self.exited():
                raise RuntimeError(f"serve-triton: {self.exited()} exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"serve-triton: not ready after {self.ready_timeout_s:.0f} s")
            time.sleep(0.2)
        return self

    def triton_batch_stats(self) -> tuple[int, int]:
        """(execution_count, inference_count) from Triton's statistics: forward passes and texts so far."""
        from ..transformer.triton_client import triton_batch_stats

        stats = triton_batch_stats(self.triton_http_url, self.model_name)
        return stats.execution_count, stats.inference_count

    def stop(self, timeout_s: float = 30.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TritonPair":
        try:
            return self.start().wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hfserve.triton.dev_serve",
                                     description="Run the Triton launcher and the transformer together")
    parser.add_argument("--model_name", default="minilm")
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--bind_address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--triton_http_port", type=int, default=8000)
    parser.add_argument("--triton_grpc_port", type=int, default=8001)
    parser.add_argument("--triton_metrics_port", type=int, default=8002)
    args, extra = parser.parse_known_args(argv)

    pair = TritonPair(args.model_dir, args.model_name, bind_address=args.bind_address, port=args.port,
                      triton_ports=(args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port),
                      triton_args=tuple(extra))
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    pair.start()
    print(f"serve-triton: transformer {pair.http_url} (gRPC {pair.grpc_target}), Triton HTTP "
          f"{pair.triton_http_url}, gRPC {pair.triton_grpc_target}, metrics port {pair.triton_metrics_port}",
          flush=True)
    status = 0
    try:
        while not stopping:
            exited = pair.exited()
            if exited:
                name, status = exited[0]
                print(f"serve-triton: {name} exited with status {status}; stopping the other", flush=True)
                break
            time.sleep(0.2)
    finally:
        pair.stop()
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
