"""Both runtimes serving the packaged MiniLM and tiny local checkpoints, for comparison with independent references
(sentence-transformers, transformers' pipelines and generate(), run in the test process).

Every server here is a shared one (tests/servers.py): runtime 1 by checkpoint and arguments; runtime 2 is the
session's MiniLM stack (the launcher with the chart's defaults) and the one tritonserver holding the tiny encoder
checkpoints, with a transformer per model started here. Each stops after the last module that uses it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ..servers import MINILM_TRITON, NO_DRAIN_DELAY, TINY_TRITON, RunningServer, ServerStarter, SharedStacks

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
# On runtime 2 as well: MiniLM on the shared launcher stack, the others on the shared tiny tritonserver.
TRITON_ENCODERS = [name for name in ENCODERS if name != "embed"]


def predict(server: RunningServer, instances: list, **parameters):
    body = {"instances": instances, **({"parameters": parameters} if parameters else {})}
    response = httpx.post(f"{server.url}/v1/models/{server.model_name}:predict", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


class TritonRuntime:
    """Runtime 2 for the reference tests: MiniLM on the shared launcher stack; each tiny encoder as a transformer
    (started here, with the model's arguments) in front of the shared tiny tritonserver, where it is named by kind."""

    def __init__(self, stacks: SharedStacks, model_dirs: dict[str, Path], workdir: Path):
        self.stacks = stacks
        self.model_dirs = model_dirs
        self.transformers = ServerStarter(workdir / "transformer-logs")
        self.running: dict[str, RunningServer] = {}

    def get(self, name: str) -> RunningServer:
        if name == "minilm":
            return self.stacks.get(MINILM_TRITON).transformer
        if name not in self.running:
            kind, extra = ENCODERS[name]
            tiny = self.stacks.get(TINY_TRITON)
            self.running[name] = self.transformers.start(
                "hfserve.transformer", self.model_dirs[name], kind, "--predictor_host", tiny.grpc,
                *extra, ready_path="/v2/models/{model}/ready", timeout=120, env=NO_DRAIN_DELAY)
        return self.running[name]

    def stop(self) -> None:
        self.transformers.stop_all()


@pytest.fixture(scope="package")
def model_dir(tiny_models, minilm_dir):
    def get(name: str) -> Path:
        kind = {**ENCODERS, **GENERATORS}[name][0]
        return minilm_dir if kind == "minilm" else tiny_models(kind)

    return get


def reference_servers(item):
    """The shared servers a reference test may ask `served` for (tests/servers.py: ServerUsers)."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    names = [params["name"]] if "name" in params else [*ENCODERS, *GENERATORS]
    runtimes = [params["runtime"]] if "runtime" in params else list(RUNTIMES)
    for name in names:
        if "huggingface" in runtimes:
            yield {**ENCODERS, **GENERATORS}[name]
        if "triton" in runtimes and name in TRITON_ENCODERS:
            yield MINILM_TRITON if name == "minilm" else TINY_TRITON


def _served(shared_stacks, start_huggingface_runtime, model_dir, tmp_path_factory):
    triton = TritonRuntime(shared_stacks, {name: model_dir(name) for name in TRITON_ENCODERS},
                           tmp_path_factory.mktemp("reference-triton"))

    def get(runtime: str, name: str) -> RunningServer:
        if runtime == "triton":
            return triton.get(name)
        return start_huggingface_runtime(model_dir(name), name, *{**ENCODERS, **GENERATORS}[name][1])

    yield get
    triton.stop()


_served.shared_keys_for = reference_servers
served = pytest.fixture(scope="package", name="served")(_served)
served.__doc__ = "served(runtime, name) -> RunningServer: `name` (ENCODERS or GENERATORS) on runtime \"huggingface\" or \"triton\"."
