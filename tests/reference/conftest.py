"""Both runtimes serving the packaged MiniLM and tiny local checkpoints, for comparison with independent references
(sentence-transformers, transformers' pipelines and generate(), run in the test process).

Runtime 1 servers are shared with the other modules where the model and arguments are the same; the rest, and
runtime 2 (one real Triton holding every encoder model, one transformer per model), stop after this package.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from hfserve.triton.local_server import find_triton
from hfserve.triton.repository import build_repository
from hfserve.triton.supervisor import TritonProcess, group_pids, shm_segments

from devkit.processes import free_port, http_status

from ..servers import RunningServer, ServerStarter

RUNTIMES = ("huggingface", "triton")
# Triton opens its ports once every model has loaded; each model's stub imports torch. On a loaded 2-core
# machine that took minutes, so the first test on runtime 2 may wait this long (pytest's timeout is raised for it).
TRITON_START_S = 600
# Runtime 2 starts inside the first test that asks for it (see TRITON_START_S).
SLOW_START = pytest.mark.timeout(TRITON_START_S + 300)

# served name -> (tiny kind, or "minilm"; extra arguments for both runtimes)
ENCODERS = {
    "minilm": ("minilm", ()),  # mean pooling, Normalize module
    "embed": ("text_embedding", ()),  # the same on a tiny checkpoint: runtime 1 only (MiniLM covers it on Triton)
    "embed_cls": ("text_embedding_cls", ()),
    "embed_max": ("text_embedding_max", ()),
    "sentiment": ("sequence_classification", ()),
    "topics": ("multi_label_classification", ("--return_probabilities",)),
    "ner": ("token_classification", ()),
    "mask": ("fill_mask", ()),
}
GENERATORS = {"writer": ("text_generation", ()), "t5": ("text2text_generation", ())}
TRITON_ENCODERS = [name for name in ENCODERS if name != "embed"]  # one Python-backend process each
# Served by other modules under the same name and arguments: runtime 1 reuses those processes.
SHARED_WITH_OTHER_MODULES = {"minilm", "sentiment", "ner", "mask", "writer", "t5"}


def predict(server: RunningServer, instances: list, **parameters):
    body = {"instances": instances, **({"parameters": parameters} if parameters else {})}
    response = httpx.post(f"{server.url}/v1/models/{server.model_name}:predict", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


class TritonRuntime:
    """One tritonserver with every encoder model in ENCODERS, started on first use; a transformer per model."""

    def __init__(self, model_dirs: dict[str, Path], workdir: Path):
        self.model_dirs = model_dirs
        self.workdir = workdir
        self.process: TritonProcess | None = None
        self.shm_prefix = ""
        self.transformers = ServerStarter(workdir / "transformer-logs")
        self.running: dict[str, RunningServer] = {}
        self.failed = ""

    def _start_triton(self) -> None:
        repository = self.workdir / "repository"
        for name, model_dir in self.model_dirs.items():
            build_repository(model_dir, repository, name, dtype="float32", device="cpu", max_batch_size=8,
                             preferred_batch_sizes=[8], max_queue_delay_us=1000)
        install = find_triton()
        http, self.grpc, metrics = free_port(), free_port(), free_port()
        self.shm_prefix, token = TritonProcess.new_identity()
        command = [str(install.binary), f"--model-repository={repository}",
                   f"--backend-directory={install.backend_dir}", "--disable-auto-complete-config",
                   "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                   f"--http-port={http}", f"--grpc-port={self.grpc}", f"--metrics-port={metrics}",
                   "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",
                   f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}", "--exit-timeout-secs=10"]
        self.process = TritonProcess(command, install.env, f"http://127.0.0.1:{http}", "minilm", self.shm_prefix,
                                     token, 10)
        self.process.start()
        deadline = time.monotonic() + TRITON_START_S
        while not all(http_status(f"http://127.0.0.1:{http}/v2/models/{m}/ready") == 200 for m in self.model_dirs):
            if self.process.poll() is not None:
                self.failed = "tritonserver exited during start-up"
            elif time.monotonic() > deadline:
                self.failed = f"the reference models were not ready on Triton after {TRITON_START_S} s"
            if self.failed:
                pytest.fail(self.failed)
            time.sleep(0.5)

    def get(self, name: str) -> RunningServer:
        if self.failed:
            pytest.fail(f"runtime 2 did not start: {self.failed}")
        if self.process is None:
            self._start_triton()
        if name not in self.running:
            extra = ENCODERS[name][1]
            self.running[name] = self.transformers.start(
                "hfserve.transformer", self.model_dirs[name], name, "--predictor_host", f"127.0.0.1:{self.grpc}",
                *extra, ready_path="/v2/models/{model}/ready", timeout=120)
        return self.running[name]

    def stop(self) -> None:
        self.transformers.stop_all()
        if self.process is not None:
            self.process.stop()
            assert not group_pids(self.process.pid) and not shm_segments(self.shm_prefix)


@pytest.fixture(scope="package")
def model_dir(tiny_models, minilm_dir):
    def get(name: str) -> Path:
        kind = {**ENCODERS, **GENERATORS}[name][0]
        return minilm_dir if kind == "minilm" else tiny_models(kind)

    return get


@pytest.fixture(scope="package")
def served(start_huggingface_runtime, model_dir, tmp_path_factory):
    """served(runtime, name) -> RunningServer: `name` (ENCODERS or GENERATORS) on runtime "huggingface" or "triton"."""
    own = ServerStarter(tmp_path_factory.mktemp("reference-logs"))
    own_running: dict[str, RunningServer] = {}
    triton = TritonRuntime({name: model_dir(name) for name in TRITON_ENCODERS},
                           tmp_path_factory.mktemp("reference-triton"))

    def get(runtime: str, name: str) -> RunningServer:
        if runtime == "triton":
            return triton.get(name)
        extra = {**ENCODERS, **GENERATORS}[name][1]
        if name in SHARED_WITH_OTHER_MODULES:
            return start_huggingface_runtime(model_dir(name), name, *extra)
        if name not in own_running:
            own_running[name] = own.start("hfserve.huggingface", model_dir(name), name, *extra,
                                          ready_path="/v2/models/{model}/ready")
        return own_running[name]

    yield get
    own.stop_all()
    triton.stop()
