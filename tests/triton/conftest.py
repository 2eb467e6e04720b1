"""Real Triton (the nvidia-pytriton wheel's tritonserver) on the CPU, started by our launcher or directly.

Every process starts in its own process group on free loopback ports and is stopped by group, even when a test
fails; Triton's own group (it is started by the launcher in a new session) is killed by pid as well.

Never import `tritonclient.grpc` and kserve in one process (duplicate protobuf symbols): these tests talk to
Triton with `hfserve.transformer.triton_client` (hand-encoded wire messages) or over HTTP.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hfserve.triton.supervisor import group_pids

from devkit.processes import ServerProcess, free_port, http_status
from devkit.triton_stats import triton_batch_stats

from ..servers import RunningServer, ServerStarter


def child_pids(pid: int) -> list[int]:
    children = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            children += [int(p) for p in Path(path).read_text().split()]
        except OSError:
            pass
    return children


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return text[text.rfind(")") + 2:].split()[0] in ("Z", "X")


def stub_pids() -> set[int]:
    """Live Python-backend workers on this machine (zombies waiting for init to reap them do not count)."""
    pids = {int(p.split("/")[2]) for p in glob.glob("/proc/[0-9]*/comm")
            if process_name(int(p.split("/")[2])).startswith("triton_python")}
    return {pid for pid in pids if not is_zombie(pid)}


def kill_group(pgid: int | None) -> None:
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LaunchedTriton:
    """`python -m hfserve.triton` on loopback, plus what it started."""

    def __init__(self, model_dir: Path, model_name: str, workdir: Path, *extra: str,
                 ports: tuple[int, int, int] | None = None):
        self.model_name = model_name
        self.http_port, self.grpc_port, self.metrics_port = ports or (free_port(), free_port(), free_port())
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.workdir = Path(workdir)
        self.command = [
            sys.executable, "-m", "hfserve.triton", "--model_name", model_name, "--model_dir", str(model_dir),
            "--repository_dir", str(self.workdir / "repository"), "--bind_address", "127.0.0.1",
            "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port),
            "--metrics_port", str(self.metrics_port), *extra]
        self.server: ServerProcess | None = None
        self.triton_pid: int | None = None
        self.started_at = 0.0
        self.ready_after_s: float | None = None
        self.starts = 0

    def start(self, timeout: float = 300.0) -> "LaunchedTriton":  # start-up on 2 loaded cores: minutes
        self.starts += 1
        self.server = ServerProcess(self.command, self.workdir / f"launcher-{self.starts}.log")
        self.started_at = time.monotonic()
        self.server.start()
        self.wait_ready(timeout)
        self.ready_after_s = time.monotonic() - self.started_at
        return self

    @property
    def pid(self) -> int:
        return self.server.pid

    def wait_ready(self, timeout: float) -> None:
        self.server.wait_http(f"{self.http_url}/v2/models/{self.model_name}/ready", timeout=timeout)
        for _ in range(50):
            tritons = [p for p in child_pids(self.pid) if process_name(p) == "tritonserver"]
            if tritons:
                self.triton_pid = tritons[0]
                return
            time.sleep(0.1)
        raise RuntimeError("no tritonserver child found")

    def triton_ready(self) -> bool:
        return http_status(f"{self.http_url}/v2/models/{self.model_name}/ready", timeout=0.5) == 200

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.server.log_tail(60) if self.server else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=40)
        kill_group(self.triton_pid)


@pytest.fixture(scope="module")
def launch_triton(tmp_path_factory):
    """launch_triton(model_dir, model_name, *extra) -> LaunchedTriton (ready); all stopped after the module."""
    launched: list[LaunchedTriton] = []

    def launch(model_dir: Path, model_name: str, *extra: str, ports=None, start: bool = True) -> LaunchedTriton:
        triton = LaunchedTriton(model_dir, model_name, tmp_path_factory.mktemp(f"triton-{model_name}"), *extra,
                                ports=ports)
        launched.append(triton)
        return triton.start() if start else triton

    yield launch
    for triton in launched:
        triton.stop()


@pytest.fixture(scope="module")
def start_transformer(tmp_path_factory):
    """start(model_dir, model_name, predictor, *args): the transformer on loopback, live; stopped at the end."""
    starter = ServerStarter(tmp_path_factory.mktemp("transformer-logs"))

    def start(model_dir: Path, model_name: str, predictor: str, *extra: str) -> RunningServer:
        return starter.start("hfserve.transformer", model_dir, model_name, "--predictor_host", predictor, *extra,
                             timeout=120)

    yield start
    starter.stop_all()


def wait_until(predicate, timeout: float, interval: float = 0.02) -> float | None:
    """Seconds until predicate() is true, or None after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    return None


def stats_after(http_url, model, before, requests, timeout=5.0):
    """Triton's statistics delta once `requests` more successes are counted (it counts just after responding)."""
    deadline = time.monotonic() + timeout
    while True:
        delta = triton_batch_stats(http_url, model) - before
        if delta.success_count >= requests or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


__all__ = ["LaunchedTriton", "group_pids", "stub_pids", "wait_until", "kill_group"]
