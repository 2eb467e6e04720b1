"""Peer servers measured beside ours in the same run (`make bench PEERS=infinity`, `make bench-engines PEERS=...`).

A figure of ours means little against another day's figure of a peer on this shared machine, so each peer runs
from its own pinned virtualenv (`requirements/peers/<name>.txt`, installed with --no-deps so that it is exactly
what was pinned), on the same model, driven by the same client at the same points.

- infinity: Infinity 0.0.78 with its ONNX engine (optimum + ONNX Runtime, CPU), the fastest peer of issue 12's
  table. Its ONNX file is exported by optimum's own exporter (`optimum-cli export onnx`), not by ours, and Infinity
  sends no usage statistics (DO_NOT_TRACK=1). Its pins use optimum 2.x: optimum 1.x, which Infinity 0.0.78 was
  written for, does not import beside torch 2.13 (and its BetterTransformer needs transformers < 4.49).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from devkit.processes import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venv-peers"
MODEL = "minilm"
NO_TELEMETRY = {"DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def peer_venv(name: str) -> Path:
    """The peer's virtualenv, made from its pinned requirements when missing or older than them."""
    requirements = ROOT / "requirements" / "peers" / f"{name}.txt"
    venv, stamp = VENVS / name, VENVS / name / ".installed"
    if stamp.is_file() and stamp.stat().st_mtime >= requirements.stat().st_mtime:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "-r", str(requirements)], check=True)
    stamp.touch()
    return venv


class InfinityTarget:
    """Infinity's ONNX engine on the packaged MiniLM; the body is its OpenAI-style /embeddings request."""

    def __init__(self, model_dir: Path, logs: Path, name: str = "infinity 0.0.78 [onnx]"):
        self.name = name
        self.venv = peer_venv("infinity")
        self.model = logs / "infinity-model"
        if not (self.model / "model.onnx").is_file():
            shutil.rmtree(self.model, ignore_errors=True)
            shutil.copytree(model_dir, self.model)
            export = self.model / "onnx-export"
            subprocess.run([str(self.venv / "bin" / "optimum-cli"), "export", "onnx", "--model", str(self.model),
                            "--task", "feature-extraction", str(export)], check=True, capture_output=True,
                           env={**os.environ, **OFFLINE, **NO_TELEMETRY})
            (export / "model.onnx").rename(self.model / "model.onnx")
            shutil.rmtree(export)
        self.http_port = free_port()
        # Infinity 0.0.78 with optimum 2 finds a local ONNX file only by a relative path: serve "." from the folder.
        command = [str(self.venv / "bin" / "infinity_emb"), "v2", "--model-id", ".", "--served-model-name", MODEL,
                   "--engine", "optimum", "--host", "127.0.0.1", "--port", str(self.http_port)]
        self.server = ServerProcess(command, logs / "infinity.log", env=NO_TELEMETRY, cwd=self.model)

    def __enter__(self):
        self.server.start()
        self.server.wait_http(f"http://127.0.0.1:{self.http_port}/health", timeout=300)
        self.url = f"http://127.0.0.1:{self.http_port}/embeddings"
        return self

    def __exit__(self, *exc):
        self.server.stop()

    @staticmethod
    def body(text: str) -> dict:
        return {"model": MODEL, "input": [text]}

    def batch_stats(self) -> tuple[float, float]:
        return (0.0, 0.0)  # Infinity does not export its batch sizes


PEERS = {"infinity": InfinityTarget}
