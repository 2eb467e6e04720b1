"""A cluster run without a cluster fails with its reason; a conformance run that executes too few tests fails.

These run the real commands the e2e-kind workflow runs, on a machine without a cluster, so they cost a
pytest start-up each (about 10 s) and no server."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_pytest(*args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def no_cluster_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return {**env, "HOME": str(tmp_path), **extra}  # no ~/.kube/config either


def test_conformance_target_cluster_without_a_kube_context_is_an_error(tmp_path):
    for env in (no_cluster_env(tmp_path), no_cluster_env(tmp_path, KUBECONFIG=str(tmp_path / "missing"))):
        proc = run_pytest("conformance", "--target", "cluster", "--reports-dir", str(tmp_path), env=env)
        assert proc.returncode not in (0, 5), proc.stdout[-2000:]
        assert "--target cluster: no kubeconfig" in proc.stderr, proc.stderr[-2000:]
    refused = tmp_path / "kubeconfig"
    refused.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                       "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                       "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: x}}]\n")
    proc = run_pytest("conformance", "--target", "cluster", "--reports-dir", str(tmp_path),
                      env=no_cluster_env(tmp_path, KUBECONFIG=str(refused)))
    assert proc.returncode not in (0, 5) and "does not answer" in proc.stderr, proc.stderr[-2000:]


def test_a_conformance_run_below_its_floor_fails(tmp_path):
    proc = run_pytest("conformance", "-k", "no_test_has_this_name", "--reports-dir", str(tmp_path),
                      env=no_cluster_env(tmp_path))
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "only 0 tests executed, below the floor of 1" in proc.stdout, proc.stdout[-2000:]
    assert "below the floor" in (tmp_path / "local.md").read_text()


def test_make_cluster_test_fails_without_a_cluster(tmp_path):
    proc = run_pytest("-q", "tests/chart/test_chart_cluster.py",
                      env=no_cluster_env(tmp_path, HFSERVE_CLUSTER_TESTS="required"))
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "skipped" not in proc.stdout.splitlines()[-1] and "KUBECONFIG" in proc.stdout, proc.stdout[-2000:]
    makefile = (REPO / "Makefile").read_text()
    assert "HFSERVE_CLUSTER_TESTS=required $(PY) -m pytest -q -rs tests/chart/test_chart_cluster.py" in makefile
