"""Shared fixtures: real models (packaged MiniLM, tiny local checkpoints) and real servers on loopback."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hfserve.devtools.processes import ServerProcess, free_port, huggingface_command  # noqa: E402
from hfserve.devtools.tiny_models import build_tiny_model  # noqa: E402
from hfserve.packaged_model import packaged_model_dir  # noqa: E402


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


class RunningRuntime:
    def __init__(self, server: ServerProcess, http_port: int, grpc_port: int, model_name: str):
        self.server = server
        self.url = f"http://127.0.0.1:{http_port}"
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.model_name = model_name


@pytest.fixture(scope="session")
def start_huggingface_runtime(tmp_path_factory):
    """Starts the kserve-huggingface runtime on free loopback ports; every one started is stopped at the end."""
    started: list[ServerProcess] = []
    logs = tmp_path_factory.mktemp("server-logs")

    def start(model_dir: Path, model_name: str, *extra: str) -> RunningRuntime:
        http_port, grpc_port = free_port(), free_port()
        command = huggingface_command(model_dir, model_name, http_port, grpc_port, *extra)
        server = ServerProcess(command, logs / f"{model_name}-{http_port}.log")
        started.append(server)
        server.start()
        server.wait_http(f"http://127.0.0.1:{http_port}/v2/models/{model_name}/ready", timeout=180)
        return RunningRuntime(server, http_port, grpc_port, model_name)

    yield start
    for server in started:
        server.stop()
