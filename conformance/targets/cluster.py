"""The cluster target: KUBECONFIG's cluster gets the chart installed with helm and the example InferenceServices
applied; each predictor pod is reached through `kubectl port-forward` and its containers are signalled through
`kubectl exec` (the kubelet restarts them)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from conformance.pods.base import argv_value
from conformance.targets.deployment import MINILM_DIM, Deployment, Target, floors, wait_http_ready
from devkit.ports import reserve_port

SIDECARS = ("queue-proxy", "storage-initializer", "istio-proxy")


def split_containers(names: list[str], runtime: str) -> tuple[str, str | None]:
    """(serving container, Triton container) of a pod.

    kserve-huggingface: one container, kserve-container. kserve-huggingface-triton: the transformer
    (transformer-container) serves the pod's port and Triton runs in kserve-container.
    """
    names = [n for n in names if n not in SIDECARS]
    if runtime != "triton":
        return (names[0] if names else "kserve-container"), None
    serving = next((n for n in names if "transformer" in n), "transformer-container")
    triton = next((n for n in names if "triton" in n and n != serving),
                  next((n for n in names if n != serving), "kserve-container"))
    return serving, triton


def _run(cmd: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


class KubectlPortForward:
    def __init__(self, namespace: str, pod: str, ports: dict[int, int]):
        self.namespace, self.pod, self.ports = namespace, pod, ports  # remote -> local
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        args = [f"{local}:{remote}" for remote, local in self.ports.items()]
        self.proc = subprocess.Popen(
            ["kubectl", "-n", self.namespace, "port-forward", f"pod/{self.pod}", "--address", "127.0.0.1", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        local = next(iter(self.ports.values()))
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=1):
                return
            time.sleep(0.25)

    def ensure(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


class ClusterControl:
    """Container control on a real cluster: signals through `kubectl exec`, restarts by the kubelet."""

    restarts_by_itself = True

    def __init__(self, namespace: str, pod: str, isvc: str, serving_container: str, triton_container: str | None,
                 forward: KubectlPortForward, http_url: str, model_name: str):
        self.namespace, self.pod_name, self.isvc = namespace, pod, isvc
        self.serving_container, self.triton_container = serving_container, triton_container
        self.forward, self.http_url, self.model_name = forward, http_url, model_name

    def restart_count(self, container: str) -> int:
        out = _run(["kubectl", "-n", self.namespace, "get", "pod", self.pod_name, "-o", "json"]).stdout
        for status in json.loads(out)["status"].get("containerStatuses", []):
            if status["name"] == container:
                return int(status.get("restartCount", 0))
        raise KeyError(container)

    def kill(self, container: str, sig: int = signal.SIGKILL) -> None:
        # PID 1 of a container ignores SIGKILL sent from inside its namespace: kill every other
        # process with the signal and send SIGTERM to PID 1, which ends the container either way.
        name = signal.Signals(sig).name.removeprefix("SIG")
        script = f"kill -{name} -1 2>/dev/null; kill -TERM 1 2>/dev/null; true"
        _run(["kubectl", "-n", self.namespace, "exec", self.pod_name, "-c", container, "--", "/bin/sh", "-c", script],
             check=False, timeout=60)

    def restart(self, container: str) -> None:
        """Nothing to do: the kubelet restarts the container."""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.forward.ensure()
            try:
                wait_http_ready(self.http_url, self.model_name, min(15.0, max(1.0, deadline - time.monotonic())))
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


class ClusterPool:
    """Installs the chart, applies the example InferenceServices, port-forwards to their pods."""

    def __init__(self, namespace: str, chart: Path, examples: list[str], release: str = "hfserve-conformance",
                 timeout: float = 900):
        self.namespace, self.chart, self.examples, self.release, self.timeout = namespace, chart, examples, release, timeout
        self.forwards: list[KubectlPortForward] = []
        self.deployments: dict[str, Deployment] = {}
        self._up = False

    def up(self) -> None:
        if self._up:
            return
        self._up = True
        _run(["kubectl", "create", "namespace", self.namespace], check=False)
        _run(["helm", "upgrade", "--install", self.release, str(self.chart), "-n", self.namespace, "--wait",
              "--timeout", "10m"], timeout=self.timeout)
        files = [f for pattern in self.examples for f in sorted(glob.glob(pattern))]
        if not files:
            raise RuntimeError(f"no example manifests match {self.examples}")
        for f in files:
            _run(["kubectl", "-n", self.namespace, "apply", "-f", f])
        isvcs = json.loads(_run(["kubectl", "-n", self.namespace, "get", "inferenceservices", "-o", "json"]).stdout)["items"]
        for isvc in isvcs:
            name = isvc["metadata"]["name"]
            _run(["kubectl", "-n", self.namespace, "wait", f"inferenceservice/{name}", "--for=condition=Ready",
                  f"--timeout={int(self.timeout)}s"], timeout=self.timeout + 30)
            self._forward(isvc)

    def _forward(self, isvc: dict) -> None:
        name = isvc["metadata"]["name"]
        predictor = isvc["spec"]["predictor"]
        model = predictor.get("model", {})
        runtime_name = model.get("runtime", "") or json.dumps(predictor)
        runtime = "triton" if "triton" in runtime_name else "huggingface"
        pods = json.loads(_run(["kubectl", "-n", self.namespace, "get", "pods", "-l",
                                f"serving.kserve.io/inferenceservice={name}", "-o", "json"]).stdout)["items"]
        if not pods:
            raise RuntimeError(f"no pod for InferenceService {name}")
        pod = pods[0]
        containers = [c["name"] for c in pod["spec"]["containers"]]
        serving, triton_container = split_containers(containers, runtime)
        ports = {8080: reserve_port(), 8081: reserve_port()}
        if triton_container:
            ports[8000] = reserve_port()
            ports[8001] = reserve_port()
        fwd = KubectlPortForward(self.namespace, pod["metadata"]["name"], ports)
        self.forwards.append(fwd)
        http_url = f"http://127.0.0.1:{ports[8080]}"
        args = model.get("args", []) + predictor.get("containers", [{}])[0].get("args", []) if predictor else []
        model_name = argv_value(args, "--model_name") or name
        control = ClusterControl(self.namespace, pod["metadata"]["name"], name, serving, triton_container, fwd,
                                 http_url, model_name)
        self.deployments[runtime] = Deployment(
            id=runtime, runtime=runtime, http_url=http_url, grpc_target=f"127.0.0.1:{ports[8081]}",
            model_name=model_name, embedding_dim=MINILM_DIM if "minilm" in name else None,
            triton_http_url=f"http://127.0.0.1:{ports[8000]}" if triton_container else None,
            triton_grpc_target=f"127.0.0.1:{ports[8001]}" if triton_container else None,
            triton_model_name=model_name if triton_container else None,
            control=control, where="cluster",
        )

    def get(self, dep_id: str) -> Deployment:
        self.up()
        if dep_id not in self.deployments:
            raise LookupError(f"the cluster examples deploy no {dep_id} runtime (have {sorted(self.deployments)})")
        return self.deployments[dep_id]

    def close(self, uninstall: bool) -> None:
        for f in self.forwards:
            f.stop()
        if uninstall and self._up:
            files = [f for pattern in self.examples for f in sorted(glob.glob(pattern))]
            for f in files:
                _run(["kubectl", "-n", self.namespace, "delete", "-f", f, "--ignore-not-found"], check=False)
            _run(["helm", "uninstall", self.release, "-n", self.namespace], check=False)


class ClusterTarget(Target):
    kind = "cluster"
    # The MiniLM pair of the chart's examples: as on the pods target, without its own group and the tiny models.
    floor = 150
    group_floors = floors({"bad_input": 88, "hf_inference": 7, "limits": 18, "openai": 12, "parity": 5, "tei": 10,
                           "v1": 12, "v2_grpc": 10, "v2_rest": 12})

    def __init__(self, name: str, namespace: str, chart: Path, examples: list[str], keep: bool) -> None:
        super().__init__(name)
        self.cluster = ClusterPool(namespace, chart, examples)
        self.keep = keep

    def get(self, dep_id: str) -> Deployment:
        return self.cluster.get(dep_id)

    def close(self) -> None:
        self.cluster.close(uninstall=not self.keep)
