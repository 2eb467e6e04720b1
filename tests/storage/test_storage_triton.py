"""The Triton runtime (launcher + transformer, devkit/triton_pair.py) served from what KServe's storage-initializer
entry point wrote into an emulated pod's read-only /mnt/models, and straight from an s3:// --model_dir."""

import os
import subprocess
import sys

import numpy as np

from devkit.triton_pair import TritonPair

from ..servers import served
from .test_storage_serving import predict, read_only

reference = served("text_embedding", "tiny")


def test_the_storage_initializer_fills_mnt_models_and_the_triton_runtime_serves_it(reference, s3, tmp_path,
                                                                                    monkeypatch):
    mnt = tmp_path / "pod" / "mnt" / "models"
    subprocess.run([sys.executable, "-m", "devkit.storage_initializer", s3.uri, str(mnt)], check=True,
                   env={**os.environ, **s3.env}, timeout=300)
    read_only(mnt)
    monkeypatch.setenv("HFSERVE_CACHE_DIR", str(tmp_path / "cache"))
    try:
        with TritonPair(mnt, "tiny", log_dir=tmp_path / "logs") as pair:
            np.testing.assert_allclose(predict(pair.http_url, "tiny"), predict(reference.url, reference.model_name),
                                       atol=1e-4)
    finally:
        mnt.chmod(0o755)


def test_the_triton_runtime_serves_an_s3_uri(reference, s3, tmp_path, monkeypatch):
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HFSERVE_CACHE_DIR", str(tmp_path / "cache"))
    with TritonPair(s3.uri, "tiny", log_dir=tmp_path / "logs") as pair:
        np.testing.assert_allclose(predict(pair.http_url, "tiny"), predict(reference.url, reference.model_name),
                                   atol=1e-4)
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir() if p.name.startswith("tiny-embedder-")]
