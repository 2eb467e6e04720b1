"""On a real cluster (KServe installed): install the chart with Helm's Go SDK, apply the example
InferenceServices, wait until they are Ready and send each a V1 predict through the API server's
service proxy.

The cluster side comes from pytest-helm-charts: `kube_cluster` (a pykube client for KUBECONFIG; the
fixture errors when KUBECONFIG is unset), `namespace_factory` (a namespace created for the module and
deleted with everything in it afterwards) and `wait_for_objects_condition` (polls custom objects until a
condition holds, raising on timeout) and `delete_and_wait_for_objects`. Helm's SDK still does the install: the plugin installs charts only
through Flux or Giant Swarm's app platform, which a KServe cluster does not have.

`make cluster-test` runs this module (the e2e-kind workflow calls it) and sets HFSERVE_CLUSTER_TESTS=required:
without a usable cluster the tests then fail, they never skip. A plain `pytest` (`make test`) skips them, saying so.
Knobs (environment):
  HFSERVE_CLUSTER_NAMESPACE   namespace of the InferenceServices (default hfserve-chart-test, created and deleted)
  HFSERVE_CHART_VALUES        a values file for the chart (e.g. image overrides for locally loaded images)
  HFSERVE_STORAGE_URI         replaces the examples' storageUri (e.g. a pvc:// or s3:// copy of all-MiniLM-L6-v2)
  HFSERVE_READY_TIMEOUT_S     how long to wait for each InferenceService (default 900)
"""

from __future__ import annotations

import os
from pathlib import Path

import pykube
import pytest
import yaml
from pytest_helm_charts.clusters import Cluster
from pytest_helm_charts.utils import delete_and_wait_for_objects, wait_for_objects_condition

from .chartlib import CHART, EXAMPLES

REQUIRED = os.environ.get("HFSERVE_CLUSTER_TESTS") == "required"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REQUIRED, reason="needs a cluster: `make cluster-test` runs these (e2e-kind workflow) "
                                            "and fails without one"),
]

RELEASE = "hfserve-runtimes"
NAMESPACE = os.environ.get("HFSERVE_CLUSTER_NAMESPACE", "hfserve-chart-test")
READY_TIMEOUT = int(float(os.environ.get("HFSERVE_READY_TIMEOUT_S", "900")))
RUNTIMES = {"kserve-huggingface", "kserve-huggingface-triton"}


class InferenceService(pykube.objects.NamespacedAPIObject):
    version = "serving.kserve.io/v1beta1"
    endpoint = "inferenceservices"
    kind = "InferenceService"


class ClusterServingRuntime(pykube.objects.APIObject):
    version = "serving.kserve.io/v1alpha1"
    endpoint = "clusterservingruntimes"
    kind = "ClusterServingRuntime"


@pytest.fixture(scope="module")
def namespace(kube_cluster: Cluster, namespace_factory) -> str:
    version = kube_cluster.kube_client.version  # a request: a context that does not answer fails here
    assert version, "the cluster did not report its version"
    return namespace_factory(NAMESPACE).name


@pytest.fixture(scope="module")
def installed(kube_cluster: Cluster, namespace):
    """The chart installed for real (cluster-scoped runtimes), uninstalled afterwards."""
    from helm_python import Config

    values = None
    if path := os.environ.get("HFSERVE_CHART_VALUES"):
        values = yaml.safe_load(Path(path).read_text())
    helm = Config(kubeconfig_path=kube_cluster.kube_config_path, namespace=namespace)
    helm.install(str(CHART), RELEASE, values, namespace=namespace, create_namespace=False, wait="watcher", timeout=300)
    try:
        yield helm
    finally:
        helm.uninstall(RELEASE)
        helm.close()


def _gpu_nodes(kube_cluster: Cluster) -> int:
    nodes = pykube.Node.objects(kube_cluster.kube_client)
    return sum(int((n.obj.get("status", {}).get("allocatable") or {}).get("nvidia.com/gpu", "0")) > 0 for n in nodes)


def _examples(kind: str) -> list[Path]:
    return sorted(EXAMPLES.glob(f"*-{kind}.yaml"))


def _ready(isvc: InferenceService) -> bool:
    conditions = isvc.obj.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _predict_service(isvc: dict) -> str:
    """The Service the API server's proxy can reach: in Standard mode the predictor's; in Serverless mode
    `<name>-predictor` is an ExternalName to the ingress, so the ready revision's `-private` Service, whose port 80
    is queue-proxy (knative/serving serverlessservice `MakePrivateService`)."""
    revision = ((isvc.get("status", {}).get("components") or {}).get("predictor") or {}).get("latestReadyRevision")
    return f"{revision}-private" if revision else f"{isvc['metadata']['name']}-predictor"


def _predict(kube_cluster: Cluster, namespace: str, isvc: dict, texts: list[str]) -> dict:
    # Through the API server's proxy to a predictor Service: no ingress or port-forward needed.
    name = isvc["metadata"]["name"]
    response = kube_cluster.kube_client.post(
        version="v1", namespace=namespace,
        url=f"services/{_predict_service(isvc)}:80/proxy/v1/models/{name}:predict",
        json={"instances": texts}, timeout=120)
    assert response.status_code == 200, response.text[:2000]
    return response.json()


def _run(kube_cluster: Cluster, namespace: str, path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    if uri := os.environ.get("HFSERVE_STORAGE_URI"):
        manifest["spec"]["predictor"]["model"]["storageUri"] = uri
    manifest["metadata"]["namespace"] = namespace
    name = manifest["metadata"]["name"]
    client = kube_cluster.kube_client
    if existing := InferenceService.objects(client, namespace=namespace).get_or_none(name=name):
        delete_and_wait_for_objects(client, InferenceService, [existing])
    isvc = InferenceService(client, manifest)
    isvc.create()
    try:
        ready, = wait_for_objects_condition(client, InferenceService, [name], namespace, _ready, READY_TIMEOUT,
                                            missing_ok=False)
        runtime = manifest["spec"]["predictor"]["model"]["runtime"]
        states = ready.obj["status"].get("modelStatus", {}).get("states", {})
        assert states.get("activeModelState") == "Loaded", f"{runtime}: model status {states}"
        predictions = _predict(kube_cluster, namespace, ready.obj, ["hello world", "a second sentence"])["predictions"]
        assert len(predictions) == 2
        assert len(predictions[0]) == 384, f"{runtime}: unexpected embedding size {len(predictions[0])}"
    finally:
        delete_and_wait_for_objects(client, InferenceService, [isvc])


@pytest.mark.parametrize("example", _examples("cpu"), ids=lambda p: p.stem)
def test_cpu_example(kube_cluster, namespace, installed, example):
    _run(kube_cluster, namespace, example)


@pytest.mark.parametrize("example", _examples("gpu"), ids=lambda p: p.stem)
def test_gpu_example(kube_cluster, namespace, installed, example):
    if _gpu_nodes(kube_cluster) == 0:
        pytest.skip("no node in the cluster has allocatable nvidia.com/gpu")
    _run(kube_cluster, namespace, example)


def test_runtimes_installed(kube_cluster, installed):
    names = {r.name for r in ClusterServingRuntime.objects(kube_cluster.kube_client)}
    assert RUNTIMES <= names
