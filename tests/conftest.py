"""Shared fixtures: real models (packaged MiniLM, tiny local checkpoints) and real servers on loopback."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hfserve.packaged_model import packaged_model_dir  # noqa: E402

from devkit.tiny_models import build_tiny_model  # noqa: E402

from .servers import RunningServer, ServerStarter  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return packaged_model_dir()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """tiny_models(kind) -> directory of a tiny random checkpoint for that task, built once per session."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = build_tiny_model(kind, root / kind)
        return built[kind]

    return get


@pytest.fixture(scope="session")
def start_huggingface_runtime(tmp_path_factory):
    """start(model_dir, model_name, *args): the kserve-huggingface runtime on loopback, ready; stopped at the end.

    The same arguments give the same running server, so modules that need one model share one process."""
    starter = ServerStarter(tmp_path_factory.mktemp("server-logs"))
    running: dict[tuple, RunningServer] = {}

    def start(model_dir: Path, model_name: str, *extra: str) -> RunningServer:
        key = (str(model_dir), model_name, extra)
        if key not in running or running[key].server.process.poll() is not None:
            running[key] = starter.start("hfserve.huggingface", model_dir, model_name, *extra,
                                         ready_path="/v2/models/{model}/ready")
        return running[key]

    yield start
    starter.stop_all()


@pytest.fixture
def inference_client(monkeypatch):
    """inference_client(url) -> huggingface_hub.InferenceClient(base_url=url), exactly as a user builds it.

    The tests run with HF_HUB_OFFLINE=1, and huggingface_hub then refuses every request, loopback included; the
    guard is lifted for this test only. A client given a URL sends requests to that URL and nowhere else.
    """
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return lambda url: InferenceClient(base_url=url, timeout=120)
