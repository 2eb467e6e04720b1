"""On a real cluster (KUBECONFIG set, KServe installed): install the chart with Helm's Go SDK,
apply the example InferenceServices, wait until they are Ready and send each a V1 predict
through the API server's service proxy. Without KUBECONFIG every test here is skipped.

Run with `make cluster-test`. Knobs (environment):
  HFSERVE_CLUSTER_NAMESPACE   namespace of the InferenceServices (default hfserve-chart-test, created and deleted)
  HFSERVE_CHART_VALUES        a values file for the chart (e.g. image overrides for locally loaded images)
  HFSERVE_STORAGE_URI         replaces the examples' storageUri (e.g. a pvc:// or s3:// copy of all-MiniLM-L6-v2)
  HFSERVE_READY_TIMEOUT_S     how long to wait for each InferenceService (default 900)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from .chartlib import CHART, EXAMPLES

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no cluster: KUBECONFIG is not set"),
]

RELEASE = "hfserve-runtimes"
NAMESPACE = os.environ.get("HFSERVE_CLUSTER_NAMESPACE", "hfserve-chart-test")
READY_TIMEOUT = float(os.environ.get("HFSERVE_READY_TIMEOUT_S", "900"))
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


@pytest.fixture(scope="module")
def api():
    from kubernetes import client, config

    config.load_kube_config(os.environ["KUBECONFIG"])
    return client.ApiClient()


@pytest.fixture(scope="module")
def installed(api):
    """The chart installed for real (cluster-scoped runtimes), uninstalled afterwards."""
    from helm_python import Config

    values = None
    if path := os.environ.get("HFSERVE_CHART_VALUES"):
        values = yaml.safe_load(Path(path).read_text())
    helm = Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=NAMESPACE)
    helm.install(str(CHART), RELEASE, values, namespace=NAMESPACE, create_namespace=True, wait="watcher", timeout=300)
    try:
        yield helm
    finally:
        helm.uninstall(RELEASE)
        helm.close()


def _gpu_nodes(api) -> int:
    from kubernetes import client

    nodes = client.CoreV1Api(api).list_node().items
    return sum(int((n.status.allocatable or {}).get("nvidia.com/gpu", "0")) > 0 for n in nodes)


def _examples(kind: str) -> list[Path]:
    return sorted(EXAMPLES.glob(f"*-{kind}.yaml"))


def _apply(api, path: Path) -> dict:
    from kubernetes import client

    isvc = yaml.safe_load(path.read_text())
    if uri := os.environ.get("HFSERVE_STORAGE_URI"):
        isvc["spec"]["predictor"]["model"]["storageUri"] = uri
    objs = client.CustomObjectsApi(api)
    name = isvc["metadata"]["name"]
    try:
        objs.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        time.sleep(5)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    return objs.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, isvc)


def _wait_ready(api, name: str) -> dict:
    from kubernetes import client

    objs = client.CustomObjectsApi(api)
    deadline = time.monotonic() + READY_TIMEOUT
    status = {}
    while time.monotonic() < deadline:
        isvc = objs.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        status = isvc.get("status", {})
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])):
            return isvc
        time.sleep(5)
    pytest.fail(f"InferenceService {name} not Ready after {READY_TIMEOUT:.0f}s: {json.dumps(status)[:2000]}")


def _predict(api, name: str, texts: list[str]) -> dict:
    # Through the API server's proxy to the predictor Service: no ingress or port-forward needed.
    path = f"/api/v1/namespaces/{NAMESPACE}/services/{name}-predictor:80/proxy/v1/models/{name}:predict"
    method, url, headers, body, post = api.param_serialize(
        "POST", path, header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body={"instances": texts}, auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, body, post, _request_timeout=120)
    resp.read()
    assert resp.status == 200, resp.data[:2000]
    return json.loads(resp.data)


def _run(api, path: Path) -> None:
    from kubernetes import client

    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    _apply(api, path)
    try:
        isvc = _wait_ready(api, name)
        runtime = yaml.safe_load(path.read_text())["spec"]["predictor"]["model"]["runtime"]
        assert isvc["status"].get("modelStatus", {}).get("states", {}).get("activeModelState", "Loaded") == "Loaded"
        out = _predict(api, name, ["hello world", "a second sentence"])
        preds = out["predictions"]
        assert len(preds) == 2
        vec = preds[0]["embedding"] if isinstance(preds[0], dict) else preds[0]
        assert len(vec) == 384, f"{runtime}: unexpected embedding size {len(vec)}"
    finally:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)


@pytest.mark.parametrize("example", _examples("cpu"), ids=lambda p: p.stem)
def test_cpu_example(api, installed, example):
    _run(api, example)


@pytest.mark.parametrize("example", _examples("gpu"), ids=lambda p: p.stem)
def test_gpu_example(api, installed, example):
    if _gpu_nodes(api) == 0:
        pytest.skip("no node in the cluster has allocatable nvidia.com/gpu")
    _run(api, example)


def test_runtimes_installed(api, installed):
    from kubernetes import client

    objs = client.CustomObjectsApi(api)
    names = {o["metadata"]["name"] for o in
             objs.list_cluster_custom_object("serving.kserve.io", "v1alpha1", "clusterservingruntimes")["items"]}
    assert {"kserve-huggingface", "kserve-huggingface-triton"} <= names
