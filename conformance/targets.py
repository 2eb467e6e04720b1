"""What the conformance suite runs against: deployments and how to reach and control them.

Three kinds of target (chosen with --target, see conftest.py):

local    Both runtimes started from the rendered chart by `conformance.pod_emulation.EmulatedPod`
         on loopback ports, serving the packaged all-MiniLM-L6-v2 and tiny locally built models.
URL      One or more existing endpoints ("http://host:port[,http://host2:port]"); no process
         control, so the tests that kill containers are skipped for them.
cluster  KUBECONFIG is set: the chart is installed with helm, the example InferenceServices are
         applied, and each predictor pod is reached through `kubectl port-forward`.

A `Deployment` is one serving endpoint for one model; its `control` (None for URL targets)
kills, restarts and waits for containers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from devkit.ports import address_in_use
from devkit.ports import reserve_port as free_port

REPO = Path(__file__).resolve().parents[1]

RUNTIME_HF = "kserve-huggingface"
RUNTIME_TRITON = "kserve-huggingface-triton"
RUNTIMES = {"huggingface": RUNTIME_HF, "triton": RUNTIME_TRITON}

MINILM = "minilm"
MINILM_DIM = 384
# Tiny random checkpoints built by devkit.tiny_models for the task-coverage tests.
TINY_ENCODER_KINDS = ("sequence_classification", "token_classification", "fill_mask")
TINY_GENERATIVE_KINDS = ("text_generation",)


@dataclass
class Deployment:
    id: str                     # pytest id: "huggingface", "triton", "huggingface-tiny-fill_mask", "target0"
    runtime: str                # "huggingface" | "triton" | "unknown"
    http_url: str
    grpc_target: str | None
    model_name: str
    task: str = "text_embedding"
    embedding_dim: int | None = MINILM_DIM
    triton_http_url: str | None = None
    triton_grpc_target: str | None = None
    triton_model_name: str | None = None
    control: Any = None         # LocalControl | ClusterControl | None
    where: str = "local"        # "local" | "url" | "cluster"

    def http(self, timeout: float | httpx.Timeout = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, timeout=timeout)


# --------------------------------------------------------------------------------------------
# readiness polling


def wait_http_ready(url: str, model: str | None, timeout: float) -> None:
    """Poll /v2/health/ready (and the model's readiness) until both say ready."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(base_url=url, timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                r = http.get("/v2/health/ready")
                last = f"/v2/health/ready {r.status_code} {r.text[:200]}"
                if r.status_code == 200 and r.json().get("ready", True):
                    if model is None:
                        return
                    r = http.get(f"/v2/models/{model}/ready")
                    last = f"/v2/models/{model}/ready {r.status_code} {r.text[:200]}"
                    if r.status_code == 200:
                        return
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s: {last}")


# --------------------------------------------------------------------------------------------
# local target: the chart's pod emulation


def _container_names(pod) -> list[str]:
    for attr in ("container_names", "containers", "processes", "procs"):
        value = getattr(pod, attr, None)
        if callable(value):
            with contextlib.suppress(TypeError):
                value = value()
        if isinstance(value, dict):
            return [str(k) for k in value]
        if isinstance(value, (list, tuple)) and value:
            names = []
            for v in value:
                names.append(v if isinstance(v, str) else getattr(v, "name", str(v)))
            return names
    return []


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


class LocalControl:
    """Process control over one EmulatedPod."""

    def __init__(self, pod, runtime: str, model_name: str):
        self.pod = pod
        self.runtime = runtime
        self.model_name = model_name
        self.serving_container, self.triton_container = split_containers(_container_names(pod), runtime)
        self.can_signal = True

    def pid(self, container: str) -> int:
        return self.pod.pid(container)

    def kill(self, container: str, sig: int = signal.SIGKILL) -> None:
        self.pod.kill(container, sig=sig)

    def restart(self, container: str) -> None:
        self.pod.restart(container)

    def expect_restart(self, container: str) -> None:
        self.pod.expect_restart(container)

    def restarts_by_itself(self) -> bool:
        # EmulatedPod: no kubelet, the test restarts; PodmanPod: restart policy Always does.
        return bool(getattr(self.pod, "restarts_by_itself", False))

    def wait_ready(self, timeout: float) -> None:
        self.pod.wait_ready(timeout)


class LocalPool:
    """Starts EmulatedPods on first use (every pod the selected tests need at once), stops them all at the end."""

    def __init__(self, work_dir: Path, startup_timeout: float = 420.0, pod_factory=None):
        self.work_dir = work_dir
        self.startup_timeout = startup_timeout
        # EmulatedPod.start (host processes, --target local) or PodmanPod.start (--target pods)
        self.pod_factory = pod_factory
        self.stack = contextlib.ExitStack()
        self.needed: set[str] = set()
        self.deployments: dict[str, Deployment] = {}
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()

    # ids of every deployment the local target offers
    @staticmethod
    def all_ids() -> list[str]:
        ids = ["huggingface", "triton"]
        for kind in TINY_ENCODER_KINDS:
            ids += [f"huggingface-tiny-{kind}", f"triton-tiny-{kind}"]
        for kind in TINY_GENERATIVE_KINDS:
            ids.append(f"huggingface-tiny-{kind}")
        return ids

    @staticmethod
    def _spec(dep_id: str) -> tuple[str, str | None]:
        runtime, _, rest = dep_id.partition("-tiny-")
        return runtime, (rest or None)

    def _model_dir(self, kind: str | None) -> Path:
        if kind is None:
            from hfserve.packaged_model import packaged_model_dir

            return packaged_model_dir()
        out = self.work_dir / "tiny" / kind
        if not (out / "config.json").exists():
            from devkit.tiny_models import build_tiny_model

            build_tiny_model(kind, out)
        return out

    def get(self, dep_id: str) -> Deployment:
        with self._lock:
            if dep_id in self.errors:
                raise RuntimeError(f"{dep_id} failed to start earlier: {self.errors[dep_id]}")
            if dep_id not in self.deployments:
                batch = sorted((self.needed | {dep_id}) - set(self.deployments) - set(self.errors))
                self._start(batch)
            if dep_id in self.errors:
                raise RuntimeError(f"{dep_id} did not start: {self.errors[dep_id]}")
            return self.deployments[dep_id]

    def _start(self, ids: list[str]) -> None:
        from conformance.pod_emulation import EmulatedPod

        start_pod = self.pod_factory or EmulatedPod.start
        started = []
        for dep_id in ids:
            runtime, kind = self._spec(dep_id)
            model_name = MINILM if kind is None else f"tiny-{kind.replace('_', '-')}"
            try:
                model_dir = self._model_dir(kind)
                pod = self.stack.enter_context(
                    start_pod(RUNTIMES[runtime], model_dir=str(model_dir), model_name=model_name)
                )
                started.append((dep_id, runtime, kind, model_name, pod))
            except Exception as exc:  # noqa: BLE001 - reported per deployment
                self.errors[dep_id] = f"{type(exc).__name__}: {exc}"
        for dep_id, runtime, kind, model_name, pod in started:
            for attempt in range(3):
                try:
                    pod.wait_ready(self.startup_timeout)
                    wait_http_ready(pod.http_url, model_name, 60)
                    break
                except Exception as exc:  # noqa: BLE001
                    if attempt < 2 and address_in_use(str(exc)):
                        # a port was taken by a program outside our reservations: same pod, new ports
                        pod.stop()
                        pod = self.stack.enter_context(
                            start_pod(RUNTIMES[runtime], model_dir=str(pod.model_dir), model_name=model_name))
                        continue
                    self.errors[dep_id] = f"{type(exc).__name__}: {exc}"
                    break
            if dep_id in self.errors:
                continue
            task = "text_embedding" if kind is None else kind
            self.deployments[dep_id] = Deployment(
                id=dep_id,
                runtime=runtime,
                http_url=pod.http_url,
                grpc_target=pod.grpc_target,
                model_name=model_name,
                task=task,
                embedding_dim=MINILM_DIM if kind is None else None,
                triton_http_url=getattr(pod, "triton_http_url", None) if runtime == "triton" else None,
                triton_grpc_target=getattr(pod, "triton_grpc_target", None) if runtime == "triton" else None,
                triton_model_name=model_name if runtime == "triton" else None,
                control=LocalControl(pod, runtime, model_name),
                where="local",
            )

    def save_logs(self, out_dir: Path) -> list[Path]:
        """Write every container's log of every started pod to out_dir (for a failed run)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for dep_id, dep in self.deployments.items():
            pod = dep.control.pod
            for name in getattr(pod, "container_names", []):
                path = out_dir / f"{dep_id}--{name}.log"
                try:
                    path.write_text(pod.logs(name, tail=None))
                    written.append(path)
                except Exception:  # noqa: BLE001 - best effort
                    pass
        return written

    def close(self) -> None:
        """Stops every pod at once (each drains for its delay on SIGTERM, as in a cluster), then anything else."""
        pods = [dep.control.pod for dep in self.deployments.values()]
        with concurrent.futures.ThreadPoolExecutor(max(1, len(pods))) as pool:
            list(pool.map(lambda pod: pod.stop(), pods))
        self.stack.close()  # pods that never became deployments; stop() is idempotent


# --------------------------------------------------------------------------------------------
# URL target


def url_deployments(urls: list[str], model_names: list[str], runtimes: list[str], grpc_targets: list[str],
                    triton_urls: list[str], embedding_dim: int | None) -> list[Deployment]:
    deps = []
    for i, url in enumerate(urls):
        url = url.rstrip("/")
        parsed = urlparse(url)
        pick = lambda values, default: values[i] if i < len(values) else (values[-1] if values else default)  # noqa: E731
        grpc = pick(grpc_targets, None) or f"{parsed.hostname}:{(parsed.port or 80) + 1}"
        runtime = pick(runtimes, "unknown")
        model = pick(model_names, MINILM)
        triton = pick(triton_urls, None) if triton_urls else None
        deps.append(Deployment(
            id=f"target{i}", runtime=runtime, http_url=url, grpc_target=grpc, model_name=model,
            embedding_dim=embedding_dim, triton_http_url=triton,
            triton_model_name=model if triton else None, control=None, where="url",
        ))
    return deps


# --------------------------------------------------------------------------------------------
# cluster target


def _run(cmd: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


class PortForward:
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

    def __init__(self, namespace: str, pod: str, isvc: str, serving_container: str, triton_container: str | None,
                 forward: PortForward, http_url: str, model_name: str):
        self.namespace, self.pod_name, self.isvc = namespace, pod, isvc
        self.serving_container, self.triton_container = serving_container, triton_container
        self.forward, self.http_url, self.model_name = forward, http_url, model_name
        self.can_signal = True

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

    def restarts_by_itself(self) -> bool:
        return True

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
        self.forwards: list[PortForward] = []
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
        ports = {8080: free_port(), 8081: free_port()}
        if triton_container:
            ports[8000] = free_port()
            ports[8001] = free_port()
        fwd = PortForward(self.namespace, pod["metadata"]["name"], ports)
        self.forwards.append(fwd)
        http_url = f"http://127.0.0.1:{ports[8080]}"
        args = model.get("args", []) + predictor.get("containers", [{}])[0].get("args", []) if predictor else []
        model_name = name
        for i, a in enumerate(args):
            if a.startswith("--model_name="):
                model_name = a.split("=", 1)[1]
            elif a == "--model_name" and i + 1 < len(args):
                model_name = args[i + 1]
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


def have_gpu() -> tuple[bool, str]:
    if shutil.which("nvidia-smi") is None:
        return False, "no GPU on this machine (nvidia-smi not found)"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no GPU visible to torch (torch.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001
        return False, f"torch cannot probe CUDA: {exc}"
    return True, ""
