"""The shared part of the harness's pods (conformance/pods/base.py), on a process pod assembled from the chart
but not started: argv lookup, container aliases, addresses through the pod's port map, probes."""

from __future__ import annotations

import http.server
import threading

import pytest

from conformance.chart import build_pod
from conformance.pods.base import PodError, argv_int, argv_value
from conformance.pods.process import EmulatedPod
from devkit.ports import reserve_port


def test_argv_value_reads_both_spellings_and_the_first_occurrence():
    args = ["--model_name=minilm", "--http_port", "8080", "--grpc_port=8081", "--http_port=9", "--last"]
    assert argv_value(args, "--model_name") == "minilm"
    assert argv_value(args, "--http_port") == "8080"
    assert argv_int(args, "--grpc_port") == 8081
    assert argv_value(args, "--model") is None  # a prefix is not the flag
    assert argv_value(args, "--last") is None  # no value after it
    assert argv_int([], "--http_port") is None


@pytest.fixture(scope="module")
def manifests():
    return {runtime: build_pod(runtime, "m1") for runtime in ("kserve-huggingface", "kserve-huggingface-triton")}


def _pod(manifests, runtime, tmp_path):
    return EmulatedPod(runtime, manifests[runtime], str(tmp_path), "m1", None, tmp_path / "pod", True,
                       isolate=False, run_as=None)


def test_triton_pod_names_and_addresses(manifests, tmp_path):
    pod = _pod(manifests, "kserve-huggingface-triton", tmp_path)
    assert pod.container_names == ["kserve-container", "transformer-container"]
    assert (pod.serving_container, pod.triton_container) == ("transformer-container", "kserve-container")
    assert pod._resolve("serving").name == pod._resolve("transformer").name == "transformer-container"
    assert pod._resolve("triton").name == pod._resolve("predictor").name == "kserve-container"
    with pytest.raises(KeyError, match="huggingface"):
        pod._resolve("huggingface")
    # the chart's pod ports, reached through the ports mapped on this machine
    assert pod.http_url == f"http://127.0.0.1:{pod.port_map[8080]}"
    assert pod.grpc_target == f"127.0.0.1:{pod.port_map[8081]}"
    assert pod.triton_http_url == f"http://127.0.0.1:{pod.port_map[8000]}"
    assert pod.triton_grpc_target == f"127.0.0.1:{pod.port_map[8001]}"
    # KServe's default TCP probe of the port-less Triton container targets the pod's serving port
    triton = pod.containers["kserve-container"]
    assert pod.probe_target(triton, triton.spec["readinessProbe"]) == f"tcp://127.0.0.1:{pod.port_map[8080]}"
    transformer = pod.containers["transformer-container"]
    assert pod.probe_target(transformer, transformer.spec["readinessProbe"]).startswith(pod.http_url + "/")
    assert not pod.restarts_by_itself


def test_one_container_pod(manifests, tmp_path):
    pod = _pod(manifests, "kserve-huggingface", tmp_path)
    assert pod.serving_container == "kserve-container" and pod.triton_container is None
    assert pod._resolve("huggingface").name == "kserve-container"
    assert pod.triton_http_url is None and pod.triton_grpc_target is None
    c = pod.containers["kserve-container"]
    named = {"httpGet": {"port": c.spec["ports"][0]["name"], "path": "/ready"}}
    assert pod.probe_target(c, named) == f"{pod.http_url}/ready"  # a named port: the container's own
    assert pod.probe_target(c, {"exec": {"command": ["true"]}}) is None


def test_probe_once_passes_on_2xx_and_says_why_not_otherwise(manifests, tmp_path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", reserve_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pod = _pod(manifests, "kserve-huggingface", tmp_path)
        base = f"127.0.0.1:{server.server_address[1]}"
        assert pod.probe_once("c", f"http://{base}/ok") is None
        assert "503" in pod.probe_once("c", f"http://{base}/not-ready")
        assert pod.probe_once("c", f"tcp://{base}") is None
    finally:
        server.shutdown()
        server.server_close()
    assert "refused" in pod.probe_once("c", f"tcp://{base}").lower()


def test_a_pod_whose_process_exited_is_reported_with_its_log(manifests, tmp_path):
    manifest = build_pod("kserve-huggingface", "m1")
    c = manifest["spec"]["containers"][0]
    c["command"], c["args"] = ["python", "-c", "import sys; print('boom'); sys.exit(3)"], ["--http_port=8080"]
    pod = EmulatedPod("kserve-huggingface", manifest, str(tmp_path), "m1", None, tmp_path / "pod", False,
                      isolate=False, run_as=None)
    try:
        pod._spawn("kserve-container")
        with pytest.raises(PodError, match=r"exited with code 3(.|\n)*boom"):
            pod.wait_ready(30)
    finally:
        pod.stop()
