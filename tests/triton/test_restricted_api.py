"""Triton's admin API groups need the launcher's per-launch token (security review M3): a real tritonserver started
with the launcher's command line refuses shared-memory, logging, trace, model-config and model-repository calls
without the header (403) and answers them with it; health and statistics stay open. No model is loaded (an empty
repository), so it starts in seconds."""

import time

import httpx
import pytest
from hfserve.triton import __main__ as launcher
from hfserve.triton.local_server import find_triton
from hfserve.triton.supervisor import ADMIN_HEADER, TritonProcess

from devkit.processes import free_port

RESTRICTED_GETS = ("/v2/systemsharedmemory/status", "/v2/cudasharedmemory/status", "/v2/logging",
                   "/v2/trace/setting", "/v2/models/anything/config")


def test_the_launcher_restricts_every_admin_group_on_both_protocols(tmp_path):
    args = launcher.parse_args(["--model_name", "m", "--model_dir", str(tmp_path), "--repository_dir",
                                str(tmp_path / "repo")])
    command = launcher.triton_command(find_triton().binary, None, args, "hfserve_triton_1_ab_", "TOKEN", gpu=False)
    http = next(a for a in command if a.startswith("--http-restricted-api="))
    grpc = next(a for a in command if a.startswith("--grpc-restricted-protocol="))
    assert http == f"--http-restricted-api=model-repository,shared-memory,logging,trace,model-config:{ADMIN_HEADER}=TOKEN"
    assert grpc == f"--grpc-restricted-protocol=model-repository,shared-memory,logging,trace:{ADMIN_HEADER}=TOKEN"


@pytest.fixture
def bare_triton(tmp_path):
    install = find_triton()
    (tmp_path / "repo").mkdir()
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = launcher.parse_args(["--model_name", "m", "--model_dir", str(tmp_path), "--repository_dir",
                                str(tmp_path / "repo"), "--http_port", str(http), "--grpc_port", str(grpc),
                                "--metrics_port", str(metrics)])
    shm_prefix, token = TritonProcess.new_identity()
    command = [a for a in launcher.triton_command(install.binary, install.backend_dir, args, shm_prefix, token,
                                                  gpu=False) if not a.startswith("--load-model=")]
    url = f"http://127.0.0.1:{http}"
    triton = TritonProcess(command, install.env, url, "m", shm_prefix, token, 5)
    triton.start()
    try:
        deadline = time.monotonic() + 120
        while httpx_status(f"{url}/v2/health/live") != 200:
            assert triton.poll() is None, "tritonserver exited during start-up"
            assert time.monotonic() < deadline, "tritonserver not live after 120 s"
            time.sleep(0.2)
        yield url, token
    finally:
        triton.stop()


def httpx_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_a_real_tritonserver_refuses_the_admin_apis_without_the_token(bare_triton):
    url, token = bare_triton
    with httpx.Client(base_url=url, timeout=10) as http:
        for path in RESTRICTED_GETS:
            refused = http.get(path)
            assert refused.status_code == 403, (path, refused.status_code, refused.text[:200])
        assert http.post("/v2/logging", json={"log_verbose_level": 1}).status_code == 403
        assert http.post("/v2/repository/index", json={}).status_code == 403
        assert http.post("/v2/systemsharedmemory/region/x/register",
                         json={"key": "/x", "offset": 0, "byte_size": 8}).status_code == 403
        admin = {ADMIN_HEADER: token}
        assert http.get("/v2/systemsharedmemory/status", headers=admin).status_code == 200
        assert http.get("/v2/logging", headers=admin).status_code == 200
        assert http.post("/v2/repository/index", json={}, headers=admin).status_code == 200
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/v2/models/stats").status_code == 200  # statistics: open, read-only counts
