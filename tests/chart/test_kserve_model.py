"""The KServe/Knative model's own rules, on small objects, case by case as KServe's and Knative's
sources state them (conformance/kserve_model cites the file and function of each rule)."""

from __future__ import annotations

import copy

import pytest

from conformance.kserve_model import (
    AdmissionError,
    InvalidPredictorSpec,
    KnativeRejected,
    NoSupportingRuntime,
    TemplateError,
    admit_cluster_runtime,
    assemble_pod,
    builtin_runtimes,
    knative_problems,
    raw_service_ports,
    render_placeholders,
    select_runtime,
)
from conformance.kserve_model.pod_assembly import controller_pod_spec


def rt(name, priority=1, auto=True, protocols=("v1", "v2"), version="1", fmt="huggingface", **spec):
    f = {"name": fmt, "version": version, "autoSelect": auto}
    if priority is not None:
        f["priority"] = priority
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": {"name": name},
            "spec": {"supportedModelFormats": [f], "protocolVersions": list(protocols),
                     "containers": spec.pop("containers", [{"name": "kserve-container", "image": "x",
                                                            "args": ["--model_name={{.Name}}"]}]), **spec}}


def isvc(name="m", runtime=None, **model):
    m = {"modelFormat": {"name": "huggingface"}, "storageUri": "s3://b/m", **model}
    if runtime:
        m["runtime"] = runtime
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"predictor": {"model": m}}}


# ---- admission ---------------------------------------------------------------------------


@pytest.mark.parametrize("new,existing,refused", [
    (rt("a", 1), rt("b", 1), True),
    (rt("a", 2), rt("b", 1), False),
    (rt("a", 1, protocols=("grpc-v2",)), rt("b", 1), False),   # no common protocol
    (rt("a", 1), rt("b", 1, auto=False), False),                # only autoSelect formats compete
    (rt("a", 1), rt("b", 1, version="2"), False),               # another format version
    (rt("a", None), rt("b", 1), False),                         # priority unset
    (rt("a", 1), rt("b", 1, disabled=True), False),             # existing disabled
    (rt("a", 1, disabled=True), rt("b", 1), False),             # new disabled
    (rt("a", 1, multiModel=True), rt("b", 1), False),           # different multi-model flag
    (rt("a", 2), rt("b", 2, workerSpec={"containers": []}), True),  # workerSpec is not looked at
    (rt("a", 1, fmt="HuggingFace"), rt("b", 1), True),          # names compare case-insensitively
])
def test_cluster_serving_runtime_webhook_priority_rule(new, existing, refused):
    if refused:
        with pytest.raises(AdmissionError, match="same priority"):
            admit_cluster_runtime(new, [existing], "0.21")
    else:
        admit_cluster_runtime(new, [existing], "0.21")


def test_crd_priority_minimum_and_builtin_runtimes():
    with pytest.raises(AdmissionError, match="greater than or equal to 1"):
        admit_cluster_runtime(rt("a", 0), [], "0.21")
    names = {r["metadata"]["name"] for r in builtin_runtimes("0.15")}
    assert {"kserve-huggingfaceserver", "kserve-huggingfaceserver-multinode"} <= names
    assert "kserve-huggingfaceserver-multinode" not in {r["metadata"]["name"] for r in builtin_runtimes("0.14")}


# ---- selection ---------------------------------------------------------------------------


def test_selection_by_priority_autoselect_protocol_and_multinode():
    runtimes = [rt("low", 1), rt("none", None), rt("high", 5, protocols=("v2",)), rt("multi", 9, workerSpec={"x": 1}),
                rt("off", 7, auto=False)]
    assert select_runtime(isvc(), runtimes)["metadata"]["name"] == "low"  # high lacks v1, the default protocol
    assert select_runtime(isvc(protocolVersion="v2"), runtimes)["metadata"]["name"] == "high"
    assert select_runtime(isvc(), [rt("none", None), rt("low", 1)])["metadata"]["name"] == "low"
    assert select_runtime(isvc(runtime="off"), runtimes)["metadata"]["name"] == "off"  # pinned ignores autoSelect
    with pytest.raises(NoSupportingRuntime):
        select_runtime(isvc(), [rt("off", 7, auto=False)])
    with pytest.raises(NoSupportingRuntime):
        select_runtime(isvc(runtime="low", protocolVersion="grpc-v2"), runtimes)
    with pytest.raises(NoSupportingRuntime):
        select_runtime(isvc(runtime="gone"), runtimes)


# ---- templating --------------------------------------------------------------------------


@pytest.mark.parametrize("text,out", [
    ("--model_name={{.Name}}", "--model_name=m"), ("{{ .Namespace }}/{{- .Name -}}", "ns/m"), ("plain", "plain")])
def test_placeholders(text, out):
    assert render_placeholders({"args": [text]}, {"name": "m", "namespace": "ns"})["args"] == [out]


@pytest.mark.parametrize("text", ["{{ messages }}", "{{.Name", "{{.Nope}}", "{% if x %}{{ x | upper }}"])
def test_stray_template_actions_are_errors(text):
    with pytest.raises(TemplateError):
        render_placeholders({"env": [{"name": "T", "value": text}]}, {"name": "m"})


# ---- pod assembly ------------------------------------------------------------------------


def _triton_like():
    return rt("t", containers=[
        {"name": "sidecar", "image": "s", "args": ["--keep={{ raw }}"]},
        {"name": "kserve-container", "image": "k", "args": ["--a", "--model_name={{.Name}}"],
         "env": [{"name": "X", "value": "1"}], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        {"name": "transformer-container", "image": "t", "args": ["--model_name={{.Name}}"],
         "ports": [{"name": "http1", "containerPort": 8080}]},
    ])


def test_pod_assembly_merge_order_and_placeholders():
    item = isvc("emb", "t", args=["--b"], env=[{"name": "X", "value": "2"}, {"name": "Y", "value": "3"}],
                resources={"limits": {"nvidia.com/gpu": "1"}})
    new = controller_pod_spec(_triton_like(), item, "0.21")
    assert [c["name"] for c in new["containers"]] == ["kserve-container", "transformer-container", "sidecar"]
    k, t, side = new["containers"]
    assert k["args"] == ["--a", "--model_name=emb", "--b"]  # appended
    assert k["resources"]["limits"] == {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}
    assert {e["name"]: e["value"] for e in k["env"]} == {"X": "2", "Y": "3", "INFERENCE_SERVICE_NAME": "emb"}
    assert t["args"] == ["--model_name=emb"] and "resources" not in t
    assert side["args"] == ["--keep={{ raw }}"]  # other containers verbatim, no template pass
    old = controller_pod_spec(_triton_like(), item, "0.15")
    assert old["containers"][0]["args"] == ["--a", "--model_name=emb", "--b"]  # appended on 0.15 too (B1)
    assert "env" not in old["containers"][1]  # INFERENCE_SERVICE_NAME from 0.17


def test_model_mount_read_only_unless_annotated_and_raw_defaults():
    pod = assemble_pod(_triton_like(), isvc("emb", "t"), "RawDeployment", "0.21")
    mounts = {c["name"]: c.get("volumeMounts") for c in pod["spec"]["containers"]}
    assert mounts["kserve-container"] == mounts["transformer-container"] == [
        {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True}]
    assert mounts["sidecar"] is None
    probes = {c["name"]: c.get("readinessProbe") for c in pod["spec"]["containers"]}
    assert probes["kserve-container"]["tcpSocket"] == {"port": 8080}
    assert probes["transformer-container"]["tcpSocket"] == {"port": 8080} and probes["sidecar"] is None
    rw = isvc("emb", "t")
    rw["metadata"]["annotations"] = {"storage.kserve.io/readonly": "false"}
    pod = assemble_pod(_triton_like(), rw, "RawDeployment", "0.21")
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] is False


def test_a_template_error_fails_the_isvc():
    bad = _triton_like()
    bad["spec"]["containers"][2]["args"].append("{{ oops }}")
    with pytest.raises(InvalidPredictorSpec):
        controller_pod_spec(bad, isvc("emb", "t"), "0.21")


def test_raw_service_targets_the_transformer():
    pod = assemble_pod(_triton_like(), isvc("emb", "t"), "RawDeployment", "0.21")
    assert raw_service_ports(pod) == [{"name": "http1", "port": 80, "targetPort": 8080}]
    grpc = {"spec": {"containers": [{"name": "kserve-container", "ports": [{"name": "h2c", "containerPort": 8081}]}]}}
    assert raw_service_ports(grpc)[0]["appProtocol"] == "kubernetes.io/h2c"


# ---- Knative -------------------------------------------------------------------------------


def _ksvc(**changes):
    spec = {"containers": [{"name": "a", "image": "x", "ports": [{"name": "http1", "containerPort": 8080}]},
                           {"name": "b", "image": "y"}]}
    for path, value in changes.items():
        spec = value(copy.deepcopy(spec)) if callable(value) else {**spec, path: value}
    return spec


@pytest.mark.parametrize("spec,why", [
    (_ksvc(x=lambda s: {**s, "containers": [{**s["containers"][0]}, {**s["containers"][1], "ports": [
        {"containerPort": 9000}]}]}), "more than one container port"),
    (_ksvc(x=lambda s: {**s, "containers": [{**s["containers"][0], "ports": [{"name": "grpc", "containerPort": 8080}]},
                                            s["containers"][1]]}), "Port name grpc is not allowed"),
    (_ksvc(x=lambda s: {**s, "containers": [{**s["containers"][0], "ports": [{"containerPort": 9091}]},
                                            s["containers"][1]]}), "reserved port"),
    (_ksvc(x=lambda s: {**s, "containers": [{**s["containers"][0], "env": [{"name": "PORT", "value": "1"}]},
                                            s["containers"][1]]}), "PORT is a reserved"),
    (_ksvc(x=lambda s: {**s, "containers": [s["containers"][0], {**s["containers"][1], "readinessProbe": {
        "exec": {"command": ["true"]}}}]}), "multi-container-probing"),
    (_ksvc(tolerations=[{"key": "k"}]), "podspec-tolerations"),
    (_ksvc(nodeSelector={"a": "b"}), "podspec-nodeselector"),
    (_ksvc(affinity={"nodeAffinity": {}}), "podspec-affinity"),
])
def test_knative_admission_with_stock_flags(spec, why):
    assert any(why in p for p in knative_problems(spec)), knative_problems(spec)


def test_knative_flags_and_liveness_rewrite():
    assert knative_problems(_ksvc()) == []
    assert knative_problems(_ksvc(tolerations=[{"key": "k"}]), {"kubernetes.podspec-tolerations": "enabled"}) == []
    runtime = rt("r", containers=[{"name": "kserve-container", "image": "x",
                                   "ports": [{"name": "h2c", "containerPort": 8081}],
                                   "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}}}])
    pod = assemble_pod(runtime, isvc("m", "r"), "Serverless", "0.21")
    serving = pod["spec"]["containers"][0]
    assert serving["livenessProbe"]["httpGet"]["port"] == 8081  # rewritten to the declared port
    assert {"name": "PORT", "value": "8081"} in serving["env"]
    assert pod["spec"]["containers"][-1]["name"] == "queue-proxy"
    kept = assemble_pod(runtime, isvc("m", "r"), "Serverless", "0.21", {"multi-container-probing": "enabled"},
                        knative_version="1.23")
    assert kept["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] == 8080
    with pytest.raises(KnativeRejected):
        item = isvc("m", "r")
        item["spec"]["predictor"]["tolerations"] = [{"key": "k"}]
        assemble_pod(runtime, item, "Serverless", "0.21")
