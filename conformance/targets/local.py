"""The local and pods targets: the chart's pods started on this machine, as processes (local) or from the built
images as podman pods (pods), serving the packaged all-MiniLM-L6-v2 and tiny locally built models."""

from __future__ import annotations

import concurrent.futures
import contextlib
import tempfile
import threading
from pathlib import Path

from conformance.targets.deployment import (
    MINILM,
    MINILM_DIM,
    RUNTIMES,
    TINY_ENCODER_KINDS,
    TINY_GENERATIVE_KINDS,
    Deployment,
    Target,
    floors,
    wait_http_ready,
)
from devkit.ports import address_in_use


class LocalPool:
    """Starts pods on first use (every pod the selected tests need at once), stops them all at the end."""

    def __init__(self, work_dir: Path, pod_factory, startup_timeout: float = 420.0):
        self.work_dir = work_dir
        self.startup_timeout = startup_timeout
        self.pod_factory = pod_factory  # EmulatedPod.start or PodmanPod.start
        self.stack = contextlib.ExitStack()
        self.needed: set[str] = set()
        self.deployments: dict[str, Deployment] = {}
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()

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
        started = []
        for dep_id in ids:
            runtime, kind = self._spec(dep_id)
            model_name = MINILM if kind is None else f"tiny-{kind.replace('_', '-')}"
            try:
                model_dir = self._model_dir(kind)
                pod = self.stack.enter_context(
                    self.pod_factory(RUNTIMES[runtime], model_dir=str(model_dir), model_name=model_name))
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
                            self.pod_factory(RUNTIMES[runtime], model_dir=str(pod.model_dir), model_name=model_name))
                        continue
                    self.errors[dep_id] = f"{type(exc).__name__}: {exc}"
                    break
            if dep_id in self.errors:
                continue
            self.deployments[dep_id] = Deployment(
                id=dep_id, runtime=runtime, http_url=pod.http_url, grpc_target=pod.grpc_target,
                model_name=model_name, task="text_embedding" if kind is None else kind,
                embedding_dim=MINILM_DIM if kind is None else None,
                triton_http_url=pod.triton_http_url, triton_grpc_target=pod.triton_grpc_target,
                triton_model_name=model_name if pod.has_transformer else None,
                control=pod, where="local",
            )

    def save_logs(self, out_dir: Path) -> list[Path]:
        """Write every container's log of every started pod to out_dir (for a failed run)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for dep_id, dep in self.deployments.items():
            for name in dep.control.container_names:
                path = out_dir / f"{dep_id}--{name}.log"
                try:
                    path.write_text(dep.control.logs(name, tail=None))
                    written.append(path)
                except Exception:  # noqa: BLE001 - best effort
                    pass
        return written

    def close(self) -> None:
        """Stops every pod at once (each drains for its delay on SIGTERM, as in a cluster), then anything else."""
        pods = [dep.control for dep in self.deployments.values()]
        with concurrent.futures.ThreadPoolExecutor(max(1, len(pods))) as pool:
            list(pool.map(lambda pod: pod.stop(), pods))
        self.stack.close()  # pods that never became deployments; stop() is idempotent


class PoolTarget(Target):
    """A target whose pods this run starts (LocalPool); subclasses say how."""

    startup_timeout = 420.0
    local: LocalPool

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name or self.kind)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"hfserve-{self.kind}-")
        self.local = LocalPool(Path(self._tmp.name), self.pod_factory(), self.startup_timeout)

    def pod_factory(self):
        raise NotImplementedError

    def get(self, dep_id: str) -> Deployment:
        return self.local.get(dep_id)

    def close(self) -> None:
        self.local.close()
        self._tmp.cleanup()


class LocalTarget(PoolTarget):
    """Both runtimes from the rendered chart as processes (conformance.pods.process), MiniLM and tiny models."""

    kind = "local"
    floor = 175  # 2026-12: 214 selected (per group below)
    group_floors = floors({"attack": 44, "bad_input": 88, "batching": 2, "degradation": 4, "hf_inference": 13,
                           "limits": 18,
                           "openai": 12, "parity": 5, "tasks": 27, "tei": 11, "v1": 12, "v2_grpc": 10, "v2_rest": 12})

    def pod_factory(self):
        from conformance.pods.process import EmulatedPod

        return EmulatedPod.start

    def tiny_pair_ids(self) -> list[tuple[str, str]]:
        return [(f"huggingface-tiny-{k}", f"triton-tiny-{k}") for k in TINY_ENCODER_KINDS]

    def generative_ids(self) -> list[str]:
        return [f"huggingface-tiny-{k}" for k in TINY_GENERATIVE_KINDS]


class PodsTarget(PoolTarget):
    """The MiniLM deployments as podman pods of the built images (conformance.pods.podman; make pod-test)."""

    kind = "pods"
    startup_timeout = 600.0
    floor = 180  # 2026-12: 194 selected (the MiniLM pair, no tiny models; per group below)
    group_floors = floors({"attack": 33, "bad_input": 88, "batching": 2, "degradation": 5, "hf_inference": 7,
                           "limits": 18,
                           "openai": 12, "parity": 5, "pods": 12, "tei": 11, "v1": 12, "v2_grpc": 10, "v2_rest": 12})

    def pod_factory(self):
        from conformance.pods.podman import PodmanPod

        return PodmanPod.start
