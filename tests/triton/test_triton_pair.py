"""`make serve-triton` behaves like a pod under the kubelet: a dead Triton or transformer is restarted after a
back-off while the other keeps serving (503 + not ready while Triton is down), and Ctrl-C stops everything."""

import glob
import signal
import sys
import time

import httpx
import psutil
import pytest

from devkit.processes import ServerProcess, http_status, start_with_retries
from devkit.triton_pair import KubeletBackoff

from .conftest import wait_until

MODEL = "tiny"


def test_backoff_follows_the_kubelet():
    backoff = KubeletBackoff()
    assert [backoff.delay(ran_for=1) for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.delay(ran_for=600) == 10  # ran 10 minutes: the back-off starts over
    assert backoff.delay(ran_for=5) == 20


@pytest.fixture
def serve_triton(tmp_path, tiny_models):
    started: list[ServerProcess] = []

    def start_on(ports):
        http, grpc, t_http, t_grpc, t_metrics = ports
        command = [sys.executable, "-m", "devkit.triton_pair", "--model_name", MODEL,
                   "--model_dir", str(tiny_models("text_embedding")), "--port", str(http), "--grpc_port", str(grpc),
                   "--triton_http_port", str(t_http), "--triton_grpc_port", str(t_grpc),
                   "--triton_metrics_port", str(t_metrics), "--restart_backoff_s", "1", "--restart_backoff_max_s", "2",
                   "--transformer_arg=--drain_delay_s=0", "--drain_delay_s", "0"]
        server = ServerProcess(command, tmp_path / f"serve-triton-{http}.log")
        started.append(server)
        server.start()
        server.wait_http(f"http://127.0.0.1:{http}/v2/health/ready", timeout=240)
        return server, f"http://127.0.0.1:{http}"

    try:
        yield start_with_retries(start_on, 5)
    finally:
        for server in started:
            server.stop(timeout=60)


def named(root: psutil.Process, name: str) -> psutil.Process:
    for child in root.children(recursive=True):
        if child.name() == name or name in " ".join(child.cmdline()):
            return child
    raise LookupError(name)


def predict(url):
    return httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": ["hello"]}, timeout=60)


@pytest.mark.timeout(900)
def test_killed_triton_is_restarted_and_the_transformer_serves_throughout(serve_triton):
    server, url = serve_triton
    root = psutil.Process(server.pid)
    assert predict(url).status_code == 200
    launcher = named(root, "-m hfserve.triton --model_name")
    everything_of_triton = [launcher] + launcher.children(recursive=True)
    assert any(p.name() == "tritonserver" for p in everything_of_triton)

    named(root, "tritonserver").kill()
    assert wait_until(lambda: http_status(f"{url}/v2/health/ready") == 503, 30) is not None
    down = predict(url)
    assert down.status_code == 503 and "unavailable" in down.json()["error"]
    assert http_status(f"{url}/v2/health/live") == 200
    gone = wait_until(lambda: not [p for p in everything_of_triton if p.is_running()
                                   and p.status() != psutil.STATUS_ZOMBIE], 30)
    assert gone is not None, "processes of the dead Triton container left behind"
    assert not glob.glob(f"/dev/shm/hfserve_triton_{launcher.pid}_*")

    assert wait_until(lambda: http_status(f"{url}/v2/health/ready") == 200, 240, interval=0.5) is not None, \
        server.log_tail()
    assert predict(url).status_code == 200
    assert "triton exited with status 137; restarting it in 1 s (kubelet back-off)" in server.log_path.read_text()


@pytest.mark.timeout(900)
def test_killed_transformer_is_restarted_and_ctrl_c_stops_everything(serve_triton):
    server, url = serve_triton
    root = psutil.Process(server.pid)
    named(root, "hfserve.transformer").kill()
    assert wait_until(lambda: http_status(f"{url}/v2/health/live") is None, 30) is not None
    assert wait_until(lambda: http_status(f"{url}/v2/health/ready") == 200, 240, interval=0.5) is not None, \
        server.log_tail()
    assert predict(url).status_code == 200

    everything = root.children(recursive=True)
    launcher_pids = [p.pid for p in everything if "hfserve.triton" in " ".join(p.cmdline())]
    root.send_signal(signal.SIGINT)
    assert server.process.wait(90) == 0
    time.sleep(0.5)
    left = [p.pid for p in everything if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, left
    assert not [s for pid in launcher_pids for s in glob.glob(f"/dev/shm/hfserve_triton_{pid}_*")]
