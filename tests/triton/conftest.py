"""Real Triton (the nvidia-pytriton wheel's tritonserver) on the CPU, started by our launcher or directly.

Every process starts in its own process group on free loopback ports and is stopped by group, even when a test
fails; Triton's own group (it is started by the launcher in a new session) is killed by pid as well.

Never import `tritonclient.grpc` and kserve in one process (duplicate protobuf symbols): these tests talk to
Triton with `hfserve.transformer.triton_client` (hand-encoded wire messages) or over HTTP.
"""

from __future__ import annotations

import glob
import time
from pathlib import Path

import pytest
from hfserve.triton.supervisor import group_pids

from devkit.triton_stats import triton_batch_stats

from ..servers import LaunchedTriton, RunningServer, ServerStarter, kill_group, process_name


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
