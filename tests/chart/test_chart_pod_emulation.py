"""The chart's arguments really start the runtimes: each ClusterServingRuntime rendered by Helm is
turned into the predictor pod KServe would build (conformance.kserve_model) and run as local
processes (conformance.pods.process; only the cluster is emulated, the command, args and env are
the assembled pod's own), serves the packaged all-MiniLM-L6-v2 with /mnt/models read-only, and a
typo in any container's arguments makes the pod fail instead of going unnoticed."""

from __future__ import annotations

import ipaddress
import os
import signal
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from conformance.chart import build_pod
from conformance.pods.base import PodError
from conformance.pods.process import EmulatedPod, isolation_available

pytestmark = pytest.mark.slow

MODEL = "minilm"
DIM = 384
READY_TIMEOUT = 300


@pytest.fixture(scope="module")
def model_dir():
    from hfserve.packaged_model import packaged_model_dir

    return packaged_model_dir()


def _listening_addresses(pid: int) -> set[str]:
    addrs = set()
    procs = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        addrs |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    return addrs


def _assert_loopback_only(pid: int) -> None:
    addrs = _listening_addresses(pid)
    assert addrs, "nothing is listening"
    for addr in addrs:
        ip = ipaddress.ip_address(addr)
        ip = getattr(ip, "ipv4_mapped", None) or ip
        assert ip.is_loopback, f"pid {pid} listens on {addr}"


def _predict(url: str, texts: list[str]) -> list:
    r = httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": texts}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _assert_embeddings(predictions: list, n: int) -> None:
    assert len(predictions) == n
    for p in predictions:
        vec = p["embedding"] if isinstance(p, dict) else p
        assert len(vec) == DIM and all(isinstance(x, float) for x in vec)


def _chart_bind(pod: EmulatedPod, container: str) -> str | None:
    """The --bind_address of the assembled pod's container, before the emulation touched it."""
    spec = next(c for c in pod.manifest["spec"]["containers"] if c["name"] == container)
    return next((a.split("=", 1)[1] for a in spec["args"] if a.startswith("--bind_address=")), None)


def test_huggingface_runtime_from_the_chart(model_dir):
    with EmulatedPod.start("kserve-huggingface", model_dir=model_dir, model_name=MODEL) as pod:
        assert pod.container_names == ["kserve-container"]
        # KServe's raw-mode pod: the chart's readiness probe (not KServe's TCP default), env from the spec
        c = pod.containers["kserve-container"]
        assert c.spec["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        assert c.env["INFERENCE_SERVICE_NAME"] == MODEL and c.env["HF_HUB_OFFLINE"] == "1"
        pod.wait_ready(READY_TIMEOUT)
        _assert_embeddings(_predict(pod.http_url, ["a first sentence", "another one"]), 2)
        r = httpx.get(f"{pod.http_url}/v2/models/{MODEL}/ready", timeout=10)
        assert r.status_code == 200
        # the chart binds the pod IP (0.0.0.0); only the emulation keeps it on loopback, and says so
        assert _chart_bind(pod, "kserve-container") == "0.0.0.0"
        assert pod.rebound == ["kserve-container: --bind_address=0.0.0.0"]
        _assert_loopback_only(pod.pid("kserve-container"))

        # kill -9 and start again, as the kubelet would
        old = pod.pid("kserve-container")
        pod.kill("kserve-container", signal.SIGKILL)
        assert pod.returncode("kserve-container") == -signal.SIGKILL
        assert pod.pids("kserve-container") == set()
        pod.restart("kserve-container")
        assert pod.pid("kserve-container") != old
        pod.wait_ready(READY_TIMEOUT)
        _assert_embeddings(_predict(pod.http_url, ["back again"]), 1)
        pid = pod.pid("kserve-container")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_triton_runtime_from_the_chart(model_dir):
    with EmulatedPod.start("kserve-huggingface-triton", model_dir=model_dir, model_name=MODEL) as pod:
        assert pod.container_names == ["kserve-container", "transformer-container"]  # KServe's order
        assert pod.triton_http_url and pod.triton_grpc_target
        # KServe's Standard mode gives the port-less Triton container a TCP probe on 8080: the transformer
        triton = pod.containers["kserve-container"]
        assert triton.spec["readinessProbe"]["tcpSocket"]["port"] == 8080
        assert pod.containers["transformer-container"].http_port == 8080
        assert pod.http_url == f"http://127.0.0.1:{pod.port_map[8080]}"
        # the transformer talks to Triton's (mapped) gRPC port over loopback
        assert f"--predictor_host={pod.triton_grpc_target}" in pod.argv("transformer-container")
        pod.wait_ready(READY_TIMEOUT)  # includes that default probe
        assert httpx.get(f"{pod.triton_http_url}/v2/health/ready", timeout=10).status_code == 200
        _assert_embeddings(_predict(pod.http_url, ["a first sentence", "another one", "third"]), 3)
        # the tokenizer came through the shared emptyDir the Triton launcher filled
        exported = pod.work_dir / "volumes" / "tokenizer"
        assert (exported / "config.json").exists() and any(exported.glob("tokenizer*"))
        # Triton's loopback-only binding is the chart's own, not the emulation's
        assert _chart_bind(pod, "kserve-container") == "127.0.0.1"
        assert not any(r.startswith("kserve-container") for r in pod.rebound)
        for name in pod.container_names:
            _assert_loopback_only(pod.pid(name))

        # a container kill takes every process of the container, tritonserver and its stubs included
        # (the launcher starts tritonserver in its own session)
        launcher = psutil.Process(pod.pid("kserve-container"))
        tree = [launcher] + launcher.children(recursive=True)
        assert any("tritonserver" in " ".join(p.cmdline()) for p in tree[1:])
        assert {p.pid for p in tree} <= pod.pids("kserve-container")
        pod.kill("kserve-container", signal.SIGKILL)
        survivors = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert survivors == [], [p.cmdline() for p in survivors]
        pids = [pod.pid(n) for n in pod.container_names]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.skipif(not isolation_available() and os.geteuid() == 0,
                    reason="root without mount namespaces (unshare): nothing can make a directory read-only")
def test_a_runtime_that_writes_under_mnt_models_fails(model_dir, tmp_path):
    """KServe mounts the model read-only (storage_initializer_injector.go); so does the emulation."""
    pod_spec = build_pod("kserve-huggingface", MODEL)
    c = pod_spec["spec"]["containers"][0]
    c["command"] = ["python", "-c", "import sys; open(sys.argv[1] + '/written', 'w').write('x')"]
    c["args"] = ["/mnt/models"]
    pod = EmulatedPod("kserve-huggingface", pod_spec, str(model_dir), MODEL, None, tmp_path / "w", True)
    try:
        assert pod.model_read_only
        pod._spawn("kserve-container")
        code = pod.containers["kserve-container"].proc.wait(timeout=60)
        assert code != 0
        assert "Read-only file system" in pod.logs("kserve-container") or "Permission denied" in pod.logs("kserve-container")
        assert not (Path(model_dir) / "written").exists()
    finally:
        pod.stop()


TYPOS = [
    ("kserve-huggingface", "kserve-container", {"huggingface": {"extraArgs": ["--max_batch_sizee=8"]}}),
    ("kserve-huggingface-triton", "transformer-container", {"triton": {"transformer": {"extraArgs": ["--predictor_hots=x"]}}}),
    ("kserve-huggingface-triton", "kserve-container", {"triton": {"server": {"extraArgs": ["--instance_cuont=2"]}}}),
]


@pytest.mark.parametrize("runtime,container,values", TYPOS, ids=[f"{t[0]}/{t[1]}" for t in TYPOS])
def test_a_typo_in_the_args_fails_the_pod(model_dir, runtime, container, values):
    with EmulatedPod.start(runtime, model_dir=model_dir, model_name=MODEL, values=values) as pod:
        with pytest.raises(PodError) as info:
            pod.wait_ready(120)
        assert f"{runtime}/{container} exited with code 2" in str(info.value)
        assert "unrecognized arguments" in str(info.value)


def test_path_and_port_mapping(model_dir, tmp_path, monkeypatch):
    """The emulation itself: mounts, ports, environment and bind addresses are mapped consistently."""
    monkeypatch.setenv("HFSERVE_HOST_ONLY_CANARY", "1")
    spec = build_pod("kserve-huggingface-triton", "m1")
    pod = EmulatedPod("kserve-huggingface-triton", spec, str(model_dir), "m1", None, tmp_path, True,
                      isolate=False, run_as=None)
    server, transformer = pod.argv("kserve-container"), pod.argv("transformer-container")
    assert "--model_name=m1" in server and "--model_name=m1" in transformer  # KServe's template pass
    assert f"--model_dir={model_dir}" in server  # not isolated: the model dir itself
    tok = f"{tmp_path}/volumes/tokenizer"
    assert f"--tokenizer_export_dir={tok}" in server and f"--model_dir={tok}" in transformer
    assert f"--repository_dir={tmp_path}/volumes/triton-tmp/hfserve-triton-repo" in server  # Triton's own /tmp (M4)
    assert all(a != "--bind_address=0.0.0.0" for a in server + transformer)
    assert set(pod.port_map) == {8000, 8001, 8002, 8080, 8081}
    assert len(set(pod.port_map.values())) == 5
    env = pod.containers["transformer-container"].env
    assert env["HF_HOME"] == f"{tmp_path}/volumes/cache/huggingface"
    assert "HFSERVE_HOST_ONLY_CANARY" not in env  # the spec's env only, plus PATH/PYTHONPATH to run here
    assert set(env) - {e["name"] for e in pod.containers["transformer-container"].spec["env"]} <= {
        "PATH", "PYTHONPATH", "PYTHONUNBUFFERED"}
    with pytest.raises(KeyError):
        EmulatedPod("x", spec, str(model_dir), "m1", {"nope": ["--x"]}, tmp_path, True, isolate=False, run_as=None)
    # offline is the chart's setting, not forced by the emulation
    online = build_pod("kserve-huggingface", "m1", values={"offline": False})
    pod = EmulatedPod("kserve-huggingface", online, str(model_dir), "m1", None, tmp_path / "o", True,
                      isolate=False, run_as=None)
    assert "HF_HUB_OFFLINE" not in pod.containers["kserve-container"].env
    assert sys.executable == pod.argv("kserve-container")[0]
