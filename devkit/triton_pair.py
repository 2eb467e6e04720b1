"""The kserve-huggingface-triton runtime locally: the Triton launcher and the transformer, on one address.

`make serve-triton`:
    python -m devkit.triton_pair --model_name minilm --model_dir DIR [--bind_address 127.0.0.1]
        [--port 8080] [--triton_http_port 8000] [--triton_grpc_port 8001] [--triton_metrics_port 8002]
        [extra launcher arguments...]
Like the kubelet in a pod: when Triton or the transformer exits, everything it started is killed and it is started
again after a back-off (10 s, doubling to 5 min; back to 10 s once it has run for 10 min: --restart_backoff_s,
--restart_backoff_max_s, --restart_reset_after_s). The other one keeps serving meanwhile: while Triton is down
the transformer answers 503 and reports not-ready, and serves again by itself once Triton is back.
Ctrl-C / SIGTERM stops both (each drains, then SIGKILL of everything they started).

Benchmarks and scripts:
    with TritonPair(model_dir, "minilm", log_dir=Path("logs")) as pair:   # free loopback ports, waits until ready
        pair.http_url, pair.grpc_target, pair.triton_http_url, pair.triton_grpc_target
        executions, inferences = pair.triton_batch_stats()

As in the pod, the launcher exports the tokenizer files and the transformer reads them from there.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hfserve import config
from hfserve.config import ContainerConfig, LauncherConfig, ModelConfig, RepositoryConfig

from .ports import reserve_ports
from .processes import http_status


@dataclass
class KubeletBackoff:
    """The kubelet's restart delay for a crashing container: initial, doubling up to `most`; a container that ran
    `reset_after` seconds before it exited starts over at `initial`."""

    initial: float = 10.0
    most: float = 300.0
    reset_after: float = 600.0
    _next: float = 0.0

    def delay(self, ran_for: float) -> float:
        if ran_for >= self.reset_after or self._next == 0.0:
            self._next = self.initial
        delay, self._next = self._next, min(self._next * 2, self.most)
        return delay


def _descendants(pid: int) -> list[tuple[int, float]]:
    """(pid, create time) of every process under pid, Triton's own session included."""
    import psutil

    try:
        return [(p.pid, p.create_time()) for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _kill_leftovers(known: list[tuple[int, float]]) -> None:
    import psutil

    for pid, created in known:
        try:
            process = psutil.Process(pid)
            if process.create_time() == created:
                process.kill()
        except psutil.Error:
            pass


class TritonPair:
    def __init__(self, model_dir, model_name: str = "minilm", log_dir: Path | None = None,
                 bind_address: str = "127.0.0.1", port: int | None = None, grpc_port: int | None = None,
                 triton_ports: tuple[int, int, int] | None = None, triton_args: tuple[str, ...] = (),
                 transformer_args: tuple[str, ...] = (), ready_timeout_s: float = 300.0):
        self.model_dir = str(model_dir)
        self.model_name = model_name
        self.bind_address = bind_address
        self.port, self.grpc_port = (port, grpc_port or port + 1) if port else reserve_ports(2)
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
        # Both command lines come from hfserve.config's declaration (all values given, defaults included), except
        # the transformer's kserve options (--model_name, --predictor_host and its ports are kserve's own).
        launcher = (RepositoryConfig(model_name=model_name, repository_dir=self.workdir / "repository",
                                     model=ModelConfig(model_dir=config.model_location(self.model_dir))),
                    ContainerConfig(bind_address=bind_address),
                    LauncherConfig(tokenizer_export_dir=export, http_port=self.triton_http_port,
                                   grpc_port=self.triton_grpc_port, metrics_port=self.triton_metrics_port))
        self.commands = {
            "triton": [sys.executable, "-m", "hfserve.triton",
                       *[arg for group in launcher for arg in config.to_argv(group, only_changed=False)], *triton_args],
            "transformer": [sys.executable, "-m", "hfserve.transformer", "--model_name", model_name,
                            "--predictor_host", self.triton_grpc_target, "--http_port", str(self.port),
                            "--grpc_port", str(self.grpc_port),
                            "--triton_metrics_url", f"http://127.0.0.1:{self.triton_metrics_port}/metrics",
                            *config.to_argv(ModelConfig(model_dir=export), only_changed=False),
                            *config.to_argv(ContainerConfig(bind_address=bind_address), only_changed=False),
                            *transformer_args],
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self.started_at: dict[str, float] = {}
        self.known: dict[str, list[tuple[int, float]]] = {}  # what each one started, refreshed by `watch`

    def start(self) -> "TritonPair":
        for name in self.commands:
            self.start_one(name)
        return self

    def start_one(self, name: str) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(self.commands[name], env=env, start_new_session=True, stdout=output,
                                                stderr=subprocess.STDOUT if output else None)
        self.started_at[name] = time.monotonic()
        self.known[name] = []
        if output:
            output.close()

    def watch(self) -> None:
        """Remember every process each one has started (Triton runs in a session of its own), so that a dead one
        can be cleaned up the way a container runtime does: nothing of it survives."""
        for name, process in self.processes.items():
            if process.poll() is None:
                seen = {pid for pid, _ in self.known[name]}
                self.known[name] += [d for d in _descendants(process.pid) if d[0] not in seen]

    def clean_up(self, name: str) -> None:
        """After `name` exited: kill whatever it left behind, remove its shared memory."""
        process = self.processes[name]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _kill_leftovers(self.known[name])
        for segment in glob.glob(f"/dev/shm/hfserve_triton_{process.pid}_*"):
            try:
                os.unlink(segment)
            except OSError:
                pass

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
        from .triton_stats import triton_batch_stats

        stats = triton_batch_stats(self.triton_http_url, self.model_name)
        return stats.execution_count, stats.inference_count

    def stop(self, timeout_s: float = 30.0) -> None:
        self.watch()
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
        for name in self.processes:
            self.clean_up(name)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "TritonPair":
        try:
            return self.start().wait_ready()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devkit.triton_pair", allow_abbrev=False,
                                     description="Run the Triton launcher and the transformer together; other "
                                                 "options go to the launcher")
    # The settings it passes on are the declared ones (loopback and MiniLM by default here); the rest is its own.
    config.add_field(parser, RepositoryConfig, "model_name", default="minilm")
    config.add_field(parser, ModelConfig, "model_dir", required=True)
    config.add_field(parser, ContainerConfig, "bind_address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--grpc_port", type=int, default=None, help="the transformer's gRPC port (default: --port + 1)")
    parser.add_argument("--triton_http_port", type=int, default=8000)
    parser.add_argument("--triton_grpc_port", type=int, default=8001)
    parser.add_argument("--triton_metrics_port", type=int, default=8002)
    parser.add_argument("--restart_backoff_s", type=float, default=10.0, help="first restart delay (kubelet: 10 s)")
    parser.add_argument("--restart_backoff_max_s", type=float, default=300.0, help="longest delay (kubelet: 5 min)")
    parser.add_argument("--restart_reset_after_s", type=float, default=600.0,
                        help="a process that ran this long restarts after the first delay again (kubelet: 10 min)")
    parser.add_argument("--transformer_arg", action="append", default=[],
                        help="one more argument for the transformer (repeat)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)

    pair = TritonPair(args.model_dir, args.model_name, bind_address=args.bind_address, port=args.port,
                      grpc_port=args.grpc_port,
                      triton_ports=(args.triton_http_port, args.triton_grpc_port, args.triton_metrics_port),
                      triton_args=tuple(extra), transformer_args=tuple(args.transformer_arg))
    backoffs = {name: KubeletBackoff(args.restart_backoff_s, args.restart_backoff_max_s, args.restart_reset_after_s)
                for name in pair.commands}
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    pair.start()
    print(f"serve-triton: transformer {pair.http_url} (gRPC {pair.grpc_target}), Triton HTTP "
          f"{pair.triton_http_url}, gRPC {pair.triton_grpc_target}, metrics port {pair.triton_metrics_port}",
          flush=True)
    restart_at: dict[str, float] = {}
    try:
        while not stopping:
            pair.watch()
            for name, status in pair.exited():
                if name in restart_at:
                    continue
                pair.clean_up(name)
                delay = backoffs[name].delay(time.monotonic() - pair.started_at[name])
                restart_at[name] = time.monotonic() + delay
                print(f"serve-triton: {name} exited with status {128 - status if status < 0 else status}; "
                      f"restarting it in {delay:.0f} s (kubelet back-off)", flush=True)
            for name, when in list(restart_at.items()):
                if time.monotonic() >= when:
                    del restart_at[name]
                    pair.start_one(name)
                    print(f"serve-triton: restarted {name}", flush=True)
            time.sleep(0.2)
    finally:
        pair.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
