"""KServe's TLS variables make runtime 1 refuse to start with a message (security review L3), instead of kserve
moving the port to 8443 and serving plaintext there."""

import os
import subprocess
import sys

from devkit.processes import free_port


def test_runtime_1_refuses_to_start_with_kserve_tls_variables(tiny_models, tmp_path):
    pem = tmp_path / "any.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "KSERVE_TLS_CERT_FILE": str(pem), "KSERVE_TLS_KEY_FILE": str(pem)}
    result = subprocess.run([sys.executable, "-m", "hfserve.huggingface", "--model_name", "tls",
                             "--model_dir", str(tiny_models("text_embedding")), "--bind_address", "127.0.0.1",
                             "--http_port", str(free_port()), "--grpc_port", str(free_port())],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "KSERVE_TLS_CERT_FILE and KSERVE_TLS_KEY_FILE are set" in result.stderr
    assert "Traceback" not in result.stderr
