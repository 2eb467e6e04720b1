"""Runtime 1 and the Triton launcher with --model_dir as a storage URI, the storage-initializer entry point into an
emulated pod's /mnt/models, and MODEL_INIT_MODE=async: real processes, real protocol servers."""

import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from devkit.ports import release, reserve_ports
from devkit.processes import ServerProcess, huggingface_command

from ..servers import NO_DRAIN_DELAY, served

reference = served("text_embedding", "tiny")
TEXTS = ["KServe serves models", "from any storage"]


def predict(url: str, model_name: str) -> np.ndarray:
    body = json.dumps({"instances": TEXTS}).encode()
    request = urllib.request.Request(f"{url}/v1/models/{model_name}:predict", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return np.array(json.loads(response.read())["predictions"], dtype=np.float32)


class Runtime1:
    """One runtime-1 process of this module's own (its --model_dir is what the test is about)."""

    def __init__(self, model_dir, logs: Path, env: dict | None = None, *extra: str):
        self.http_port, grpc_port = reserve_ports(2)
        self.ports = (self.http_port, grpc_port)
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.server = ServerProcess(huggingface_command(model_dir, "tiny", self.http_port, grpc_port, *extra),
                                    logs / f"runtime1-{self.http_port}.log", env={**NO_DRAIN_DELAY, **(env or {})})

    def __enter__(self):
        self.server.start()
        return self

    def wait_ready(self, timeout: float = 180):
        self.server.wait_http(f"{self.url}/v2/models/tiny/ready", timeout=timeout)
        return self

    def __exit__(self, *exc):
        self.server.stop()
        release(*self.ports)


def refused(command: list[str], env: dict) -> str:
    """Run a start-up that must fail; its output, checked to end in one `hfserve`-named line with no traceback."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if line.strip()][-1]


def test_runtime_1_serves_an_s3_uri_and_an_https_archive_as_it_serves_the_folder(reference, s3, archives,
                                                                                    tmp_path):
    expected = predict(reference.url, reference.model_name)
    cache = tmp_path / "cache"
    for uri, env in ((s3.uri, s3.env), (f"{archives.url}/tiny-embedder.tar.gz", {})):
        with Runtime1(uri, tmp_path, env, "--model_cache_dir", str(cache)) as server:
            server.wait_ready()
            np.testing.assert_allclose(predict(server.url, "tiny"), expected, atol=1e-5)
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2


@pytest.mark.parametrize("uri, env, says", [
    ("S3", {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"},
     "no S3 credentials"),
    ("s3://models/empty-prefix", {}, "No model found"),
    ("pvc://claim/model", {}, "cluster-only"),
])
def test_runtime_1_refuses_an_unusable_location_in_one_line(s3, tmp_path, uri, env, says):
    uri = s3.uri if uri == "S3" else uri
    http_port, grpc_port = reserve_ports(2)
    try:
        line = refused(huggingface_command(uri, "tiny", http_port, grpc_port, "--model_cache_dir", str(tmp_path)),
                       {**s3.env, **env})
    finally:
        release(http_port, grpc_port)
    assert line.startswith("hfserve: ") and says in line and uri in line, line


def test_the_triton_launcher_refuses_an_unusable_location_in_one_line(s3, tmp_path):
    line = refused([sys.executable, "-m", "hfserve.triton", "--model_name", "tiny", "--model_dir",
                    "s3://models/empty-prefix", "--model_cache_dir", str(tmp_path)], s3.env)
    assert "No model found" in line and "s3://models/empty-prefix" in line, line


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_the_storage_initializer_fills_mnt_models_and_runtime_1_serves_it(reference, s3, tmp_path):
    """The pod's init container (`<storageUri> /mnt/models`), then the kserve-container on the read-only mount."""
    mnt = tmp_path / "pod" / "mnt" / "models"
    subprocess.run([sys.executable, "-m", "devkit.storage_initializer", s3.uri, str(mnt)], check=True,
                   env={**os.environ, **s3.env}, timeout=300)
    assert (mnt / "config.json").is_file() and (mnt / "model.safetensors").is_file()
    read_only(mnt)
    try:
        with Runtime1(mnt, tmp_path, {"HFSERVE_CACHE_DIR": str(tmp_path / "cache")}) as server:
            server.wait_ready()
            np.testing.assert_allclose(predict(server.url, "tiny"), predict(reference.url, reference.model_name),
                                       atol=1e-5)
    finally:
        mnt.chmod(0o755)


def wait_for_log(server: ServerProcess, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_tail(400):
        assert server.process.poll() is None, server.log_tail()
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{server.log_tail()}"
        time.sleep(0.2)


def test_runtime_1_waits_for_the_model_under_model_init_mode_async(checkpoint, tmp_path):
    """KServe's modelcar: the kserve-container starts before the sidecar links the model into /mnt/models."""
    mnt = tmp_path / "mnt" / "models"
    mnt.parent.mkdir(parents=True)
    with Runtime1(mnt, tmp_path, {"MODEL_INIT_MODE": "async"}) as server:
        wait_for_log(server.server, "MODEL_INIT_MODE=async: waiting up to 600 s")
        mnt.symlink_to(checkpoint)
        server.wait_ready()


def test_the_triton_launcher_waits_under_async_and_gives_up_at_its_bound(checkpoint, tmp_path):
    line = refused([sys.executable, "-m", "hfserve.triton", "--model_name", "tiny", "--model_dir",
                    str(tmp_path / "never"), "--model_init_timeout_s", "1"], {"MODEL_INIT_MODE": "async"})
    assert "did not appear within 1 s" in line, line
    # with the model linked in during the wait, the launcher goes on past it (to Triton, not installed at this path)
    mnt = tmp_path / "models"
    launcher = subprocess.Popen([sys.executable, "-m", "hfserve.triton", "--model_name", "tiny", "--model_dir",
                                 str(mnt), "--tritonserver", str(tmp_path / "no-tritonserver")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "MODEL_INIT_MODE": "async"})
    try:
        lines = []
        for line in launcher.stdout:
            lines.append(line)
            if "MODEL_INIT_MODE=async: waiting up to" in line:
                break
        mnt.symlink_to(checkpoint)
        output = "".join(lines) + launcher.communicate(timeout=120)[0]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert "is there" in output and "no-tritonserver" in output, output
