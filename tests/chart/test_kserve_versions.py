"""The chart on each KServe and Knative version the model knows (conformance/kserve_model/versions.py),
one test per finding of the source audit (issue 23: A1, A2, B1-B10) and per rule it found missing (B7).
Each asserts what the source at the cited tag does, on the chart's own objects where the finding is
about the chart, and what the chart's README says about it."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from conformance.kserve_model import (
    KNATIVE_KNOWN,
    SUPPORTED,
    KnativeRejected,
    StorageInitializerFails,
    assemble_pod,
    knative_problems,
    select_runtime,
    storage_initializer_config,
)
from conformance.kserve_model.pod_assembly import controller_pod_spec, deployment_mode
from conformance.kserve_model.runtime_defaults import update_image_tag
from conformance.kserve_model.versions import knative_installed_by

from .chartlib import CHART, EXAMPLES, render
from .kserve_matrix import HF, TRITON, isvc, runtimes_of

README = (CHART / "README.md").read_text()
VALUES_TEXT = (CHART / "values.yaml").read_text()
FLAT_README = " ".join(README.split())
SECURE = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}


def _runtime(values: dict | None, name: str) -> dict:
    return {o["metadata"]["name"]: o for o in render(values)}[name]


def _container(pod: dict, name: str) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def test_versions_are_dimensions_with_their_defaults():
    assert SUPPORTED == ("0.15", "0.16", "0.18", "0.20", "master")
    assert KNATIVE_KNOWN == ("1.15", "1.17", "1.21", "1.23")
    assert [knative_installed_by(v) for v in SUPPORTED] == ["1.15", "1.15", "1.21", "1.21", "1.21"]
    assert storage_initializer_config("0.15") == {"enableModelcar": False, "uidModelcar": None,
                                                  "enableDirectPvcVolumeMount": True}
    for version in SUPPORTED[1:]:
        assert storage_initializer_config(version)["enableModelcar"] is True
        assert storage_initializer_config(version)["uidModelcar"] == 1010


# ---- A1: an exec readiness probe on the Triton container --------------------------------------

EXEC_PROBE = {"exec": {"command": ["python", "-c", "import urllib.request; "
                                   "urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready')"]}}
HTTP_PROBE = {"httpGet": {"path": "/v2/health/ready", "port": 8000}}
PROBING = {"multi-container-probing": "enabled"}


@pytest.mark.parametrize("knative", KNATIVE_KNOWN)
def test_a1_exec_readiness_on_triton_needs_knative_1_18(knative):
    runtime = _runtime({"triton": {"server": {"readinessProbe": EXEC_PROBE}}}, TRITON)
    spec = controller_pod_spec(runtime, isvc("t", TRITON), "master")
    assert knative_problems(spec, PROBING, knative) == []  # the webhook admits it on every version
    if knative in ("1.15", "1.17"):
        with pytest.raises(KnativeRejected, match="sidecar readiness probe does not define probe port"):
            assemble_pod(runtime, isvc("t", TRITON), "Serverless", "master", PROBING, knative_version=knative)
    else:
        pod = assemble_pod(runtime, isvc("t", TRITON), "Serverless", "master", PROBING, knative_version=knative)
        assert _container(pod, "kserve-container")["readinessProbe"] == EXEC_PROBE  # the kubelet runs it


def test_a1_kserve_0_15_with_its_own_knative_fails_the_exec_probe():
    runtime = _runtime({"triton": {"server": {"readinessProbe": EXEC_PROBE}}}, TRITON)
    with pytest.raises(KnativeRejected):
        assemble_pod(runtime, isvc("t", TRITON), "Serverless", "0.15", PROBING)


@pytest.mark.parametrize("knative", KNATIVE_KNOWN)
def test_a1_the_httpget_form_works_on_every_knative_and_queue_proxy_runs_it(knative):
    runtime = _runtime({"triton": {"server": {"readinessProbe": HTTP_PROBE}}}, TRITON)
    pod = assemble_pod(runtime, isvc("t", TRITON), "Serverless", "0.15", PROBING, knative_version=knative)
    assert "readinessProbe" not in _container(pod, "kserve-container")  # not the kubelet's: Triton is loopback-only
    probes = json.loads(_env(_container(pod, "queue-proxy"))["SERVING_READINESS_PROBE"])
    assert {"container": "kserve-container", **HTTP_PROBE} in probes


def test_a1_values_and_readme_name_the_knative_version_and_the_httpget_form():
    for text in (" ".join(VALUES_TEXT.split()), FLAT_README):
        assert "1.18" in text and "httpGet: {path: /v2/health/ready, port: 8000}" in text
    assert "Knative 1.18 or later" in FLAT_README and "1.15.2" in FLAT_README


# ---- A2: oci:// on KServe 0.15 -----------------------------------------------------------------

@pytest.mark.parametrize("version", SUPPORTED)
@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_a2_oci_needs_enable_modelcar_on_0_15(version, runtime):
    rt = runtimes_of("defaults")[runtime]
    item = isvc("o", runtime, storage="oci://registry/minilm:1")
    if version == "0.15":
        with pytest.raises(StorageInitializerFails, match="enableModelcar"):
            assemble_pod(rt, item, "RawDeployment", version)
        pod = assemble_pod(rt, item, "RawDeployment", version, storage_initializer={"enableModelcar": True})
    else:
        pod = assemble_pod(rt, item, "RawDeployment", version)
    assert [c["name"] for c in pod["spec"]["containers"]][-1] == "modelcar"
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["modelcar-init"]
    assert pod["spec"]["shareProcessNamespace"] is True


def test_a2_examples_and_readme_state_the_modelcar_flag():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        header = " ".join(line.lstrip("# ") for line in path.read_text().splitlines() if line.startswith("#"))
        assert "oci://" not in header or "enableModelcar" in header, path.name
    assert "`false` on 0.15" in FLAT_README and "storageInitializer.enableModelcar: true" in FLAT_README


# ---- B1: args are appended on every release -----------------------------------------------------

@pytest.mark.parametrize("version", SUPPORTED)
def test_b1_isvc_args_are_appended_after_the_chart_s(version):
    rt = runtimes_of("defaults")[HF]
    chart_args = rt["spec"]["containers"][0]["args"]
    spec = controller_pod_spec(rt, isvc("m", HF, args=["--max_batch_size=4"]), version)
    args = spec["containers"][0]["args"]
    assert args[-1] == "--max_batch_size=4" and len(args) == len(chart_args) + 1


def test_b1_readme_drops_the_replace_advice():
    assert "*replace* the runtime's args" not in README
    assert "appended after the chart's on every supported release" in FLAT_README


# ---- B2: the modelcar's securityContext per version --------------------------------------------

def _oci_pod(version: str, runtime: str = TRITON, **config) -> dict:
    item = isvc("o", runtime, storage="oci://registry/minilm:1")
    return assemble_pod(runtimes_of("defaults")[runtime], item, "RawDeployment", version,
                        storage_initializer={"enableModelcar": True, **config})


def test_b2_modelcar_security_context_on_0_15():
    kept = _oci_pod("0.15")  # uidModelcar unset by default: nothing replaced
    assert SECURE.items() <= _container(kept, "kserve-container")["securityContext"].items()
    pod = _oci_pod("0.15", uidModelcar=1010)
    assert _container(pod, "kserve-container")["securityContext"] == {"runAsUser": 1010}
    transformer = _container(pod, "transformer-container")
    assert SECURE.items() <= transformer["securityContext"].items()
    assert "MODEL_INIT_MODE" not in _env(transformer)  # 0.15 tells only kserve-container
    assert any(m["mountPath"] == "/mnt" for m in transformer["volumeMounts"])


@pytest.mark.parametrize("version,replaced", [("0.16", True), ("0.17", True), ("0.18", False), ("0.20", False),
                                              ("master", False)])
def test_b2_modelcar_security_context_from_0_16(version, replaced):
    pod = _oci_pod(version)
    for name in ("kserve-container", "transformer-container"):
        c = _container(pod, name)
        assert _env(c)["MODEL_INIT_MODE"] == "async"
        if replaced:
            assert c["securityContext"] == {"runAsUser": 1010}, name
        else:
            assert c["securityContext"]["runAsUser"] == 1010 and SECURE.items() <= c["securityContext"].items()


def test_b2_readme_states_the_security_context_overwrite():
    assert "KServe before 0.18 *replaces* the whole securityContext" in FLAT_README
    assert "From KServe 0.18 only `runAsUser` changes" in FLAT_README


# ---- B3: the liveness custom port --------------------------------------------------------------

@pytest.mark.parametrize("knative,kept", [("1.15", False), ("1.17", False), ("1.21", False), ("1.23", True)])
def test_b3_a_custom_liveness_port_is_kept_only_from_knative_1_22(knative, kept):
    runtime = {"metadata": {"name": "r"}, "spec": {"containers": [{
        "name": "kserve-container", "image": "x", "ports": [{"name": "h2c", "containerPort": 8081}],
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}}}]}}
    pod = assemble_pod(runtime, isvc("m", "r"), "Serverless", "master", PROBING, knative_version=knative)
    assert pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] == (8080 if kept else 8081)


# ---- B4: pod-spec fields a stock Knative refuses ----------------------------------------------

def _serverless(values: dict | None = None, runtime: str = HF, **predictor) -> dict:
    item = isvc("k", runtime)
    item["spec"]["predictor"].update(predictor)
    return assemble_pod(_runtime(values, runtime), item, "Serverless", "master")


@pytest.mark.parametrize("predictor,flag", [
    ({"initContainers": [{"name": "i", "image": "busybox"}]}, "kubernetes.podspec-init-containers"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]},
     "kubernetes.podspec-topologyspreadconstraints"),
])
def test_b4_init_containers_and_topology_spread_need_their_flags(predictor, flag):
    with pytest.raises(KnativeRejected, match=flag):
        _serverless(**predictor)
    item = isvc("k", HF)
    item["spec"]["predictor"].update(predictor)
    assemble_pod(_runtime(None, HF), item, "Serverless", "master", {flag: "enabled"})


def test_b4_env_field_ref_needs_podspec_fieldref_and_the_readme_says_so():
    values = {"huggingface": {"extraEnv": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.name"}}}]}}
    with pytest.raises(KnativeRejected, match="kubernetes.podspec-fieldref"):
        _serverless(values)
    assemble_pod(_runtime(values, HF), isvc("k", HF), "Serverless", "master", {"kubernetes.podspec-fieldref": "enabled"})
    assert "`kubernetes.podspec-fieldref: enabled`" in README


def test_b4_capabilities_add_and_volume_types():
    spec = {"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 8080}],
                            "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                            "volumeMounts": [{"name": "claim", "mountPath": "/data"}]}],
            "volumes": [{"name": "claim", "persistentVolumeClaim": {"claimName": "c"}},
                        {"name": "host", "hostPath": {"path": "/"}}]}
    problems = " | ".join(knative_problems(spec))
    assert "kubernetes.containerspec-addcapabilities" in problems
    assert "kubernetes.podspec-persistent-volume-claim" in problems
    assert "hostPath" in problems and "'host' not mounted" in problems


# ---- B5: selection order ----------------------------------------------------------------------

def _rt(name, priority=None, protocols=("v1", "v2"), created="2026-01-01T00:00:00Z", auto=True):
    fmt = {"name": "huggingface", "version": "1", "autoSelect": auto}
    if priority is not None:
        fmt["priority"] = priority
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"supportedModelFormats": [fmt], "protocolVersions": list(protocols),
                     "containers": [{"name": "kserve-container", "image": "x"}]}}


def test_b5_ties_go_to_the_lowest_protocol_then_the_newest_runtime():
    older, newer = _rt("a", created="2026-01-01T00:00:00Z"), _rt("b", created="2026-02-01T00:00:00Z")
    assert select_runtime(isvc("m"), [older, newer])["metadata"]["name"] == "b"
    v2_only = _rt("c", protocols=("v2",), created="2026-03-01T00:00:00Z")
    assert select_runtime(isvc("m", protocolVersion="v2"), [v2_only, older])["metadata"]["name"] == "a"
    # the priority is the first format of that name, whatever its autoSelect
    two = _rt("d", priority=None)
    two["spec"]["supportedModelFormats"] = [{"name": "huggingface", "version": "2", "autoSelect": False, "priority": 9},
                                            {"name": "huggingface", "version": "1", "autoSelect": True}]
    assert select_runtime(isvc("m"), [_rt("e", priority=5), two])["metadata"]["name"] == "d"


# ---- B6: deployment-mode names ------------------------------------------------------------------

@pytest.mark.parametrize("name,version,mode", [
    ("Standard", "0.15", "Serverless"), ("Standard", "0.16", "RawDeployment"), ("Knative", "0.15", "Serverless"),
    ("RawDeployment", "0.15", "RawDeployment"), ("rawdeployment", "master", "Serverless"),
    ("Knative", "master", "Serverless"), ("Standard", "master", "RawDeployment")])
def test_b6_mode_names_are_exact_and_versioned(name, version, mode):
    item = isvc("m", HF)
    item["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": name}
    assert deployment_mode(item, "Serverless", version) == mode
    assert "`Knative` and `Standard` only from KServe 0.16" in FLAT_README


# ---- B7: the rules the model lacked --------------------------------------------------------------

@pytest.mark.parametrize("version,image", [("0.15", "ghcr.io/hfserve/huggingface-runtime:0.1.0"),
                                           ("0.20", "ghcr.io/hfserve/huggingface-runtime:0.1.0-gpu"),
                                           ("master", "ghcr.io/hfserve/huggingface-runtime:0.1.0-gpu")])
def test_b7_server_type_annotation_appends_gpu_from_0_20(version, image):
    rt = _runtime({"huggingface": {"annotations": {"serving.kserve.io/server-type": "huggingfaceserver"}}}, HF)
    gpu = isvc("g", HF, resources={"limits": {"nvidia.com/gpu": "1"}})
    assert controller_pod_spec(rt, gpu, version)["containers"][0]["image"] == image
    plain = controller_pod_spec(runtimes_of("defaults")[HF], gpu, version)["containers"][0]["image"]
    assert not plain.endswith("-gpu")  # the chart's default name and annotations are safe
    assert "serving.kserve.io/server-type" in README


@pytest.mark.parametrize("version", SUPPORTED)
def test_b7_a_runtime_named_like_kserve_s_gets_the_gpu_suffix_on_every_version(version):
    container = {"image": "r/hf:0.1.0", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    update_image_tag(container, None, "kserve-huggingfaceserver", {}, version)
    assert container["image"] == "r/hf:0.1.0-gpu"


@pytest.mark.parametrize("version,image", [("0.15", "r/triton@sha256:24.11"), ("0.16", "r/triton@sha256:abc")])
def test_b7_runtime_version_rewrites_only_kserve_container_and_a_digest_from_0_16(version, image):
    rt = copy.deepcopy(runtimes_of("defaults")[TRITON])
    triton = next(c for c in rt["spec"]["containers"] if c["name"] == "kserve-container")
    transformer_image = next(c for c in rt["spec"]["containers"] if c["name"] == "transformer-container")["image"]
    triton["image"] = "r/triton@sha256:abc"
    spec = controller_pod_spec(rt, isvc("t", TRITON, runtimeVersion="24.11"), version)
    assert spec["containers"][0]["image"] == image
    assert spec["containers"][1]["image"] == transformer_image


@pytest.mark.parametrize("version,explicit", [("0.15", False), ("0.16", False), ("0.18", True), ("master", True)])
def test_b7_server_type_tritonserver_sets_runtime_defaults_from_0_17(version, explicit):
    rt = _runtime({"triton": {"annotations": {"serving.kserve.io/server-type": "tritonserver"}}}, TRITON)
    item = isvc("t", TRITON)
    del item["spec"]["predictor"]["model"]["storageUri"]
    args = controller_pod_spec(rt, item, version)["containers"][0]["args"]
    assert ("--model-control-mode=explicit" in args) is explicit


def test_b7_predictor_metadata_filters_annotations_and_adds_kserve_labels():
    rt = copy.deepcopy(runtimes_of("defaults")[HF])
    rt["spec"]["annotations"] = {**rt["spec"].get("annotations", {}), "autoscaling.knative.dev/min-scale": "3",
                                 "team": "runtime"}
    item = isvc("m", HF)
    item["metadata"]["annotations"] = {"team": "isvc", "autoscaling.knative.dev/max-scale": "9"}
    item["spec"]["predictor"]["annotations"] = {"team": "predictor"}
    item["spec"]["predictor"]["labels"] = {"tier": "gold"}
    meta = assemble_pod(rt, item, "RawDeployment", "master")["metadata"]
    assert meta["annotations"]["team"] == "predictor"
    assert not {"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale"} & set(meta["annotations"])
    assert meta["labels"]["serving.kserve.io/inferenceservice"] == "m" and meta["labels"]["component"] == "predictor"
    assert meta["labels"]["tier"] == "gold"


@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_b7_knative_rewrites_every_user_container(runtime):
    pod = assemble_pod(runtimes_of("defaults")[runtime], isvc("k", runtime), "Serverless", "master")
    for c in pod["spec"]["containers"]:
        if c["name"] == "queue-proxy":
            continue
        assert c["lifecycle"]["preStop"]["httpGet"] == {"port": 8022, "path": "/wait-for-drain"}
        assert {"K_REVISION", "K_CONFIGURATION", "K_SERVICE"} <= set(_env(c))
        assert not (c.get("readinessProbe") or {}).get("httpGet")  # queue-proxy runs it
    assert pod["spec"]["terminationGracePeriodSeconds"] == 300
    timed = isvc("k", runtime)
    timed["spec"]["predictor"]["timeout"] = 60
    assert assemble_pod(runtimes_of("defaults")[runtime], timed, "Serverless", "master")["spec"][
        "terminationGracePeriodSeconds"] == 60
    raw = assemble_pod(runtimes_of("defaults")[runtime], isvc("k", runtime), "RawDeployment", "master")
    assert raw["spec"]["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize("version", SUPPORTED)
def test_b7_pvc_is_mounted_directly_without_an_init_container(version):
    pod = assemble_pod(runtimes_of("defaults")[TRITON], isvc("p", TRITON, storage="pvc://models/minilm"),
                       "RawDeployment", version)
    assert "initContainers" not in pod["spec"]
    assert {"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": "models"}} in pod["spec"]["volumes"]
    for name in ("kserve-container", "transformer-container"):
        mount = next(m for m in _container(pod, name)["volumeMounts"] if m["mountPath"] == "/mnt/models")
        assert mount == {"name": "kserve-pvc-source", "mountPath": "/mnt/models", "subPath": "minilm", "readOnly": True}
    if version == "0.15":
        old = assemble_pod(runtimes_of("defaults")[TRITON], isvc("p", TRITON, storage="pvc://models/minilm"),
                           "RawDeployment", version, storage_initializer={"enableDirectPvcVolumeMount": False})
        assert [c["name"] for c in old["spec"]["initContainers"]] == ["storage-initializer"]


def test_b7_modelcar_names():
    pod = _oci_pod("master")
    assert {"name": "kserve-provision-location", "emptyDir": {}} in pod["spec"]["volumes"]
    assert _container(pod, "modelcar")["volumeMounts"][0]["name"] == "kserve-provision-location"


# ---- B9 / B10: docs ----------------------------------------------------------------------------

def test_b9_grace_period_is_documented_per_mode():
    values = yaml.safe_load(VALUES_TEXT)
    assert "drainDelaySeconds" in values
    param = next(line for line in VALUES_TEXT.splitlines() if "@param drainDelaySeconds" in line)
    assert "300 s" in param and "RawDeployment: 30 s" in param
    assert "(30 s unless the InferenceService sets it)" not in README


def test_b10_the_oci_mount_is_writable_and_the_readme_says_so():
    pod = _oci_pod("master")
    for name in ("kserve-container", "transformer-container"):
        mnt = next(m for m in _container(pod, name)["volumeMounts"] if m["mountPath"] == "/mnt")
        assert mnt["readOnly"] is False
    assert "mounts the model read-only into both" not in README
    assert re.search(r"\*writable\*\s+`emptyDir` at `/mnt`", README)


# ---- the README says which versions each kind of evidence covers --------------------------------

def test_compatibility_names_the_model_s_versions_and_the_cluster_matrix_s_separately():
    from conformance.kserve_model.versions import KNATIVE_KNOWN as knative_model

    section = README.split("## Compatibility", 1)[1].split("\n## ", 1)[0]
    model_row = next(line for line in section.splitlines() if line.startswith("| the model"))
    cluster_row = next(line for line in section.splitlines() if line.startswith("| the cluster matrix"))
    for version in SUPPORTED:
        assert version in model_row, version
    for version in knative_model:
        assert version in model_row, version
    workflow = yaml.safe_load((CHART.parents[1] / ".github" / "workflows" / "e2e-kind.yml").read_text())
    matrix = next(iter(workflow["jobs"].values()))["strategy"]["matrix"]
    for kserve in matrix["kserve"]:
        assert kserve in cluster_row, kserve
    for leg in matrix["include"]:
        assert leg["knative"] in cluster_row, leg
    assert set(matrix["mode"]) == {"RawDeployment", "Serverless"}
    assert "RawDeployment mode and in Serverless mode" in " ".join(cluster_row.split())


def test_the_cluster_tests_reach_a_serverless_predictor_through_its_private_service():
    from .test_chart_cluster import _predict_service

    raw = {"metadata": {"name": "m"}, "status": {"components": {"predictor": {}}}}
    assert _predict_service(raw) == "m-predictor"
    serverless = {"metadata": {"name": "m"},
                  "status": {"components": {"predictor": {"latestReadyRevision": "m-predictor-00002"}}}}
    assert _predict_service(serverless) == "m-predictor-00002-private"


# ---- B7: autoscaling objects ------------------------------------------------------------------------

def test_b7_serverless_autoscaling_annotations():
    from conformance.kserve_model.autoscaling import KPA

    pod = assemble_pod(runtimes_of("defaults")[HF], isvc("a", HF), "Serverless", "0.15")
    annotations = pod["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/class"] == KPA
    assert annotations["autoscaling.knative.dev/min-scale"] == "1"
    assert "autoscaling.knative.dev/max-scale" not in annotations
    scaled = isvc("a", HF)
    scaled["spec"]["predictor"].update({"minReplicas": 0, "maxReplicas": 4, "scaleTarget": 8,
                                        "scaleMetric": "concurrency"})
    scaled["metadata"]["annotations"] = {"autoscaling.knative.dev/min-scale": "5"}  # dropped: not how to set it
    annotations = assemble_pod(runtimes_of("defaults")[HF], scaled, "Serverless", "master")["metadata"]["annotations"]
    assert {k: annotations[k] for k in annotations if k.startswith("autoscaling.knative.dev/")} == {
        "autoscaling.knative.dev/class": KPA, "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/max-scale": "4", "autoscaling.knative.dev/target": "8",
        "autoscaling.knative.dev/metric": "concurrency"}


@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_b7_raw_mode_gets_a_cpu_hpa_the_chart_s_requests_can_drive(runtime):
    from conformance.kserve_model.autoscaling import raw_autoscaler

    item = isvc("a", runtime)
    pod = assemble_pod(runtimes_of("defaults")[runtime], item, "RawDeployment", "master")
    hpa = raw_autoscaler(pod, item["spec"]["predictor"], "master")
    assert hpa["kind"] == "HorizontalPodAutoscaler" and (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 1)
    assert hpa["spec"]["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization",
                                                                               "averageUtilization": 80}}
    # CPU utilization needs a CPU request on every container of the pod
    assert all((c.get("resources") or {}).get("requests", {}).get("cpu") for c in pod["spec"]["containers"])


@pytest.mark.parametrize("klass,version,kind", [("keda", "0.15", "ScaledObject"), ("external", "0.15", None),
                                                ("none", "0.16", None), ("none", "0.15", "fails")])
def test_b7_autoscaler_class_from_the_runtime_annotations(klass, version, kind):
    from conformance.kserve_model.autoscaling import UnknownAutoscalerClass, raw_autoscaler

    # huggingface.podAnnotations is the runtime's spec.annotations, which reach the predictor's metadata
    rt = _runtime({"huggingface": {"podAnnotations": {"serving.kserve.io/autoscalerClass": klass}}}, HF)
    item = isvc("a", HF)
    pod = assemble_pod(rt, item, "RawDeployment", version)
    if kind == "fails":
        with pytest.raises(UnknownAutoscalerClass):
            raw_autoscaler(pod, item["spec"]["predictor"], version)
    else:
        made = raw_autoscaler(pod, item["spec"]["predictor"], version)
        assert (made or {}).get("kind") == kind


# ---- B7: the InferenceService webhook -------------------------------------------------------------

@pytest.mark.parametrize("version", SUPPORTED)
def test_b7_every_example_passes_the_inference_service_webhook(version):
    from conformance.kserve_model import admit_inference_service

    for path in sorted(EXAMPLES.glob("*.yaml")):
        admit_inference_service(yaml.safe_load(path.read_text()), version)


@pytest.mark.parametrize("version,refused", [("0.15", False), ("0.16", False), ("0.18", True), ("master", True)])
def test_b7_pythonpath_in_the_isvc_is_refused_from_0_18(version, refused):
    from conformance.kserve_model import AdmissionError, admit_inference_service

    item = isvc("m", HF, env=[{"name": "PYTHONPATH", "value": "/x"}])
    if refused:
        with pytest.raises(AdmissionError, match="PYTHONPATH"):
            admit_inference_service(item, version)
    else:
        admit_inference_service(item, version)
    with pytest.raises(AdmissionError, match="must match"):
        admit_inference_service(isvc("MiniLM", HF), version)


# ---- B7: agent injection (logger / batcher) ----------------------------------------------------------

@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_b7_a_logger_agent_fronts_the_runtime_without_a_port_clash(runtime):
    from conformance.kserve_model import raw_service_ports

    from .kserve_matrix import listening

    item = isvc("l", runtime)
    item["spec"]["predictor"]["logger"] = {"mode": "all", "url": "http://sink.default"}
    raw = assemble_pod(runtimes_of("defaults")[runtime], item, "RawDeployment", "master")
    agent = _container(raw, "agent")
    assert 9081 not in listening(raw), "the chart must leave the agent's port free"
    front = _container(raw, "transformer-container" if runtime == TRITON else "kserve-container")
    assert agent["args"] == ["--component-port", str(front["ports"][0]["containerPort"])]
    assert agent["securityContext"] == raw["spec"]["containers"][0]["securityContext"]
    assert json.loads(_env(agent)["SERVING_READINESS_PROBE"]) == front["readinessProbe"]
    assert raw_service_ports(raw)[0]["targetPort"] == 9081
    serverless = assemble_pod(runtimes_of("defaults")[runtime], item, "Serverless", "master")
    assert _env(_container(serverless, "queue-proxy"))["USER_PORT"] == "9081"


# ---- section 1 C: smaller differences ---------------------------------------------------------------

@pytest.mark.parametrize("version,kept", [("0.15", False), ("0.16", False), ("0.18", True), ("master", True)])
def test_c5_runtime_pod_fields_merged_per_version(version, kept):
    rt = copy.deepcopy(runtimes_of("defaults")[HF])
    rt["spec"].update({"schedulerName": "gpu-scheduler", "imagePullSecrets": [{"name": "runtime"}],
                       "affinity": {"nodeAffinity": {"a": 1}}})
    item = isvc("m", HF)
    item["spec"]["predictor"].update({"imagePullSecrets": [{"name": "isvc"}], "affinity": {"podAffinity": {"b": 2}}})
    spec = controller_pod_spec(rt, item, version)
    assert ("schedulerName" in spec) is kept
    assert spec["imagePullSecrets"] == [{"name": "runtime"}, {"name": "isvc"}]
    assert spec["affinity"] == {"nodeAffinity": {"a": 1}, "podAffinity": {"b": 2}}


def test_c3_c7_c8_env_protocol_and_service_port_name():
    from conformance.kserve_model import raw_service_ports
    from conformance.kserve_model.selection import resulting_protocol

    rt = copy.deepcopy(runtimes_of("defaults")[HF])
    rt["spec"]["containers"][0]["env"].append({"name": "INFERENCE_SERVICE_NAME", "value": "mine"})
    env = _env(controller_pod_spec(rt, isvc("m", HF), "master")["containers"][0])
    assert env["INFERENCE_SERVICE_NAME"] == "m"  # AddEnvVarToPodSpec overwrites
    assert resulting_protocol(isvc("m"), {"spec": {"protocolVersions": []}}) == ""
    assert resulting_protocol(isvc("m"), runtimes_of("defaults")[HF]) == "v1"
    portless = {"metadata": {"name": "m-predictor"}, "spec": {"containers": [{"name": "kserve-container"}]}}
    assert raw_service_ports(portless) == [{"name": "m-predictor", "port": 80, "targetPort": 8080}]


def test_c2_a_stray_action_in_extra_env_fails_the_isvc_and_the_readme_says_so():
    from conformance.kserve_model import InvalidPredictorSpec

    rt = _runtime({"huggingface": {"extraEnv": [{"name": "PROMPT", "value": "{{ messages }}"}]}}, HF)
    with pytest.raises(InvalidPredictorSpec):
        controller_pod_spec(rt, isvc("m", HF), "0.15")
    assert "a `{{` in an `extraEnv` value" in FLAT_README


def test_c4_a_model_name_in_the_isvc_renames_kserve_container_and_breaks_the_model_mount():
    from conformance.kserve_model import InvalidPredictorSpec

    item = isvc("m", HF)
    item["spec"]["predictor"]["model"]["name"] = "custom"
    with pytest.raises(InvalidPredictorSpec, match="cannot find container: kserve-container"):
        assemble_pod(runtimes_of("defaults")[HF], item, "RawDeployment", "master")
    for path in sorted(EXAMPLES.glob("*.yaml")):  # the examples leave it unset
        assert "name" not in yaml.safe_load(path.read_text())["spec"]["predictor"]["model"], path.name


def test_b5_the_chart_never_relies_on_an_unstable_tie():
    """Before master KServe sorts priorities with sort.Slice (ties unordered): the chart's opt-in priorities
    differ from each other and from KServe's built-in huggingface runtimes."""
    from conformance.kserve_model import builtin_runtimes
    from conformance.kserve_model.selection import tie_is_unordered

    assert [tie_is_unordered(v) for v in SUPPORTED] == [True, True, True, True, False]
    priorities = [f["priority"] for r in runtimes_of("autoselect").values()
                  for f in r["spec"]["supportedModelFormats"] if f.get("autoSelect")]
    builtin = [f.get("priority") for r in builtin_runtimes("0.15") for f in r["spec"]["supportedModelFormats"]
               if f["name"] == "huggingface"]
    assert len(set(priorities)) == len(priorities) and not set(priorities) & set(builtin), (priorities, builtin)
