"""The chart's arguments really start the runtimes: each ClusterServingRuntime rendered by Helm is
run as local processes (conformance.pod_emulation; only the cluster is emulated, the command,
args and env are the chart's own), serves the packaged all-MiniLM-L6-v2, and a typo in any
container's arguments makes the pod fail instead of going unnoticed."""

from __future__ import annotations

import ipaddress
import signal

import httpx
import psutil
import pytest

from conformance.pod_emulation import EmulatedPod, PodError

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


def test_huggingface_runtime_from_the_chart(model_dir):
    with EmulatedPod.start("kserve-huggingface", model_dir=model_dir, model_name=MODEL) as pod:
        assert pod.container_names == ["kserve-container"]
        pod.wait_ready(READY_TIMEOUT)
        _assert_embeddings(_predict(pod.http_url, ["a first sentence", "another one"]), 2)
        r = httpx.get(f"{pod.http_url}/v2/models/{MODEL}/ready", timeout=10)
        assert r.status_code == 200
        _assert_loopback_only(pod.pid("kserve-container"))

        # kill -9 and start again, as the kubelet would
        old = pod.pid("kserve-container")
        pod.kill("kserve-container", signal.SIGKILL)
        assert pod.returncode("kserve-container") == -signal.SIGKILL
        pod.restart("kserve-container")
        assert pod.pid("kserve-container") != old
        pod.wait_ready(READY_TIMEOUT)
        _assert_embeddings(_predict(pod.http_url, ["back again"]), 1)
        pid = pod.pid("kserve-container")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# The exec readiness probe the chart README suggests for Triton (it listens on loopback only).
TRITON_EXEC_PROBE = {"exec": {"command": [
    "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready')"]},
    "periodSeconds": 10}


def test_triton_runtime_from_the_chart(model_dir):
    values = {"triton": {"server": {"readinessProbe": TRITON_EXEC_PROBE}}}
    with EmulatedPod.start("kserve-huggingface-triton", model_dir=model_dir, model_name=MODEL, values=values) as pod:
        assert pod.container_names == ["transformer-container", "kserve-container"]
        assert pod.triton_http_url and pod.triton_grpc_target
        # the transformer talks to Triton's (mapped) gRPC port over loopback
        assert f"--predictor_host={pod.triton_grpc_target}" in pod.argv("transformer-container")
        pod.wait_ready(READY_TIMEOUT)
        assert httpx.get(f"{pod.triton_http_url}/v2/health/ready", timeout=10).status_code == 200
        # wait_ready ran the exec probe against Triton's mapped port
        probe = pod._exec_probe(pod.containers["kserve-container"])
        assert pod.triton_http_url.removeprefix("http://") in probe[-1]
        _assert_embeddings(_predict(pod.http_url, ["a first sentence", "another one", "third"]), 3)
        # the tokenizer came through the shared emptyDir the Triton launcher filled
        exported = pod.work_dir / "volumes" / "tokenizer"
        assert (exported / "config.json").exists() and any(exported.glob("tokenizer*"))
        for name in pod.container_names:
            _assert_loopback_only(pod.pid(name))
        pids = [pod.pid(n) for n in pod.container_names]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


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


def test_path_and_port_mapping(model_dir, tmp_path):
    """The emulation itself: placeholders, mounts, ports and bind addresses are rewritten consistently."""
    pod = EmulatedPod.__new__(EmulatedPod)
    from conformance.pod_emulation import find_runtime, render_chart

    obj = find_runtime(render_chart(), "kserve-huggingface-triton")
    EmulatedPod.__init__(pod, "kserve-huggingface-triton", obj, str(model_dir), "m1", None, tmp_path, True)
    server, transformer = pod.argv("kserve-container"), pod.argv("transformer-container")
    assert "--model_name=m1" in server and "--model_name=m1" in transformer
    assert f"--model_dir={model_dir}" in server
    tok = f"{tmp_path}/volumes/tokenizer"
    assert f"--tokenizer_export_dir={tok}" in server and f"--model_dir={tok}" in transformer
    assert f"--repository_dir={tmp_path}/volumes/tmp/hfserve-triton-repo" in server
    assert all(a != "--bind_address=0.0.0.0" for a in server + transformer)
    assert set(pod.port_map) == {8000, 8001, 8002, 8080, 8081}
    assert len(set(pod.port_map.values())) == 5
    assert pod.containers["transformer-container"].env["HF_HOME"] == f"{tmp_path}/volumes/cache/huggingface"
    with pytest.raises(KeyError):
        EmulatedPod.__init__(pod, "x", obj, str(model_dir), "m1", {"nope": ["--x"]}, tmp_path, True)
