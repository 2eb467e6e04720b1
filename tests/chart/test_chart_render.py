"""Render the chart with the real Helm engine under every ci/*-values.yaml scenario and check every object:
against the kserve package's generated models (walked field by field), the pod template with
kubernetes-validate --strict, and the rules KServe/Knative impose on multi-container runtimes."""

from __future__ import annotations

import helm_python
import kubernetes_validate
import pytest

from .chartlib import CHART, arg_value, by_kind, container, render, runtime_as_pod, validate_model, validate_object
from .kserve_matrix import scenarios
from .test_chart_lint import _problems

K8S_VERSION = "1.30.0"
HF, TRITON = "kserve-huggingface", "kserve-huggingface-triton"
MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "ConfigMap", "PrometheusRule"}


SCENARIOS = {s.name: s.values or None for s in scenarios()}


@pytest.fixture(scope="module")
def rendered():
    return {name: render(values) for name, values in SCENARIOS.items()}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_object_validates_against_the_generated_models(rendered, name):
    objects = rendered[name]
    kinds = {o["kind"] for o in objects}
    # the observability kit's objects (tests/chart/test_chart_monitoring.py) render only where monitoring is on
    allowed = {"ClusterServingRuntime"} | (MONITORING_KINDS if "monitoring" in name else set())
    assert kinds <= allowed, f"{name} renders {sorted(kinds - allowed)}"
    for obj in runtimes_of(objects):
        assert validate_object(obj) == []


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_pod_templates_validate_with_kubernetes_validate_strict(rendered, name):
    for obj in runtimes_of(rendered[name]):
        kubernetes_validate.validate(runtime_as_pod(obj), K8S_VERSION, strict=True)


def runtimes_of(objects: list[dict]) -> list[dict]:
    runtimes = [o for o in objects if o["kind"] == "ClusterServingRuntime"]
    assert runtimes, "no ClusterServingRuntime rendered"
    return runtimes


def test_the_walker_catches_mistakes():
    good = render()[0]
    assert validate_object(good) == []
    bad = {**good, "spec": {**good["spec"], "containerz": []}}
    assert any("containerz: unknown field" in e for e in validate_object(bad))
    c0 = dict(good["spec"]["containers"][0], args="--oops")
    bad = {**good, "spec": {**good["spec"], "containers": [c0]}}
    assert any("args: expected a list" in e for e in validate_object(bad))
    bad = {**good, "spec": {**good["spec"], "supportedModelFormats": [{"version": "1", "autoSelect": "yes"}]}}
    errors = validate_object(bad)
    assert any("autoSelect: expected bool" in e for e in errors)
    assert any("supportedModelFormats[0].name: required" in e for e in errors)
    c0 = {k: v for k, v in good["spec"]["containers"][0].items() if k != "name"}
    assert any("containers[0].name: required" in e
               for e in validate_model({"containers": [c0]}, "V1alpha1ServingRuntimeSpec"))


def test_defaults(rendered):
    runtimes = by_kind(rendered["defaults"], "ClusterServingRuntime")
    assert set(runtimes) == {HF, TRITON}
    for rt in runtimes.values():
        spec = rt["spec"]
        (fmt,) = spec["supportedModelFormats"]
        # pinned by default: no takeover of InferenceServices that name only the format
        assert fmt["name"] == "huggingface" and fmt["version"] == "1" and fmt["autoSelect"] is False
        assert spec["protocolVersions"] == ["v1", "v2"]  # what the declared http port serves
        assert "disabled" not in spec
        assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"
        assert spec["annotations"]["prometheus.io/path"] == "/metrics"
        assert spec["annotations"]["prometheus.io/port"] == "8080"
        # exactly one container declares ports, and exactly one port (Knative's rule)
        with_ports = [c for c in spec["containers"] if c.get("ports")]
        assert len(with_ports) == 1 and len(with_ports[0]["ports"]) == 1
        assert with_ports[0]["ports"][0] == {"name": "http1", "containerPort": 8080, "protocol": "TCP"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert {"/tmp", "/var/cache/hfserve"} <= mounts
            env = {e["name"]: e["value"] for e in c["env"]}
            assert env["HF_HUB_OFFLINE"] == "1" and env["HF_HOME"].startswith("/var/cache/hfserve")
            assert arg_value(c["args"], "--model_name") == "{{.Name}}"  # KServe's placeholder, literally
            assert c["command"][:2] == ["python", "-m"]
            assert c["image"].startswith("ghcr.io/hfserve/") and c["image"].endswith(":0.1.0")
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    # when opted in, the plain runtime wins auto-selection
    hf_prio = runtimes[HF]["spec"]["supportedModelFormats"][0]["priority"]
    tr_prio = runtimes[TRITON]["spec"]["supportedModelFormats"][0]["priority"]
    assert hf_prio > tr_prio


def test_huggingface_runtime(rendered):
    rt = by_kind(rendered["defaults"], "ClusterServingRuntime")[HF]
    assert [c["name"] for c in rt["spec"]["containers"]] == ["kserve-container"]
    c = container(rt, "kserve-container")
    assert c["command"] == ["python", "-m", "hfserve.huggingface"]
    assert arg_value(c["args"], "--model_dir") == "/mnt/models"
    assert arg_value(c["args"], "--http_port") == "8080" and arg_value(c["args"], "--grpc_port") == "8081"
    assert arg_value(c["args"], "--bind_address") == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}


def test_triton_runtime_layout(rendered):
    rt = by_kind(rendered["defaults"], "ClusterServingRuntime")[TRITON]
    names = [c["name"] for c in rt["spec"]["containers"]]
    assert sorted(names) == ["kserve-container", "transformer-container"]
    triton, transformer = container(rt, "kserve-container"), container(rt, "transformer-container")
    assert triton["command"] == ["python", "-m", "hfserve.triton"]
    assert transformer["command"] == ["python", "-m", "hfserve.transformer"]
    # the transformer owns the serving port; Triton is pod-local only
    assert transformer["ports"][0]["containerPort"] == 8080 and "ports" not in triton
    assert arg_value(triton["args"], "--bind_address") == "127.0.0.1"
    assert arg_value(transformer["args"], "--predictor_host") == f"127.0.0.1:{arg_value(triton['args'], '--grpc_port')}"
    assert arg_value(triton["args"], "--model_dir") == "/mnt/models"
    # tokenizer files travel through a shared emptyDir the launcher fills
    assert arg_value(triton["args"], "--tokenizer_export_dir") == "/mnt/tokenizer"
    assert arg_value(transformer["args"], "--model_dir") == "/mnt/tokenizer"
    assert int(arg_value(transformer["args"], "--model_dir_wait_s")) > 0
    volumes = {v["name"]: v for v in rt["spec"]["volumes"]}
    assert "emptyDir" in volumes["tokenizer"] and volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert {m["name"] for m in transformer["volumeMounts"]} >= {"tokenizer"}
    assert arg_value(triton["args"], "--preferred_batch_sizes") == "8,16,32"
    assert rt["spec"]["annotations"]["prometheus.kserve.io/port"] == "8080"


def test_triton_model_mount_mode(rendered):
    rt = by_kind(rendered["model-mount"], "ClusterServingRuntime")[TRITON]
    triton, transformer = container(rt, "kserve-container"), container(rt, "transformer-container")
    assert arg_value(transformer["args"], "--model_dir") == "/mnt/models"
    assert arg_value(triton["args"], "--tokenizer_export_dir") is None
    assert "tokenizer" not in {v["name"] for v in rt["spec"]["volumes"]}


def test_gpu(rendered):
    runtimes = by_kind(rendered["gpu"], "ClusterServingRuntime")
    hf = container(runtimes[HF], "kserve-container")
    assert hf["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert hf["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert arg_value(hf["args"], "--dtype") == "float16"
    triton = container(runtimes[TRITON], "kserve-container")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == str(SCENARIOS["gpu"]["triton"]["server"]["gpu"])
    assert arg_value(triton["args"], "--dtype") == "float16"
    transformer = container(runtimes[TRITON], "transformer-container")
    assert "nvidia.com/gpu" not in transformer["resources"]["limits"]


@pytest.mark.parametrize("off,present", [(["triton"], {HF}), (["huggingface"], {TRITON}), (["huggingface", "triton"], set())])
def test_runtimes_can_be_turned_off(off, present):
    values = {name: {"enabled": False} for name in off}
    assert set(by_kind(render(values), "ClusterServingRuntime")) == present
    assert _problems(helm_python.lint(str(CHART), values, strict=True)) == []


def test_custom_images_and_knobs():
    digest = "sha256:" + "ab" * 32
    objs = render({
        "imagePullSecrets": [{"name": "regcred"}],
        "commonLabels": {"team": "ml"},
        "huggingface": {
            "name": "hf-custom", "disabled": True, "priority": 5, "autoSelect": False,
            "image": {"registry": "registry.example.com", "repository": "ml/hf", "tag": "1.2.3", "pullPolicy": "Always"},
            "args": {"maxLength": 256, "task": "text_embedding", "maxBatchSize": 8, "disableLowerCase": True,
                     "trustRemoteCode": True},
            "extraArgs": ["--max_request_items=4"], "extraEnv": [{"name": "FOO", "value": "bar"}],
            "nodeSelector": {"pool": "cpu"}, "tolerations": [{"key": "k", "operator": "Exists"}],
            "exposedPort": "grpc", "metrics": {"enabled": False}, "livenessProbe": None,
        },
        "triton": {
            "server": {"image": {"registry": "", "repository": "triton", "digest": digest}},
            "args": {"preferredBatchSizes": [4, 8], "maxQueueDelayUs": 100, "instanceCount": 2, "exitTimeoutSeconds": 20},
        },
    })
    for obj in objs:
        assert validate_object(obj) == []
        kubernetes_validate.validate(runtime_as_pod(obj), K8S_VERSION, strict=True)
    runtimes = by_kind(objs, "ClusterServingRuntime")
    hf = runtimes["hf-custom"]
    assert hf["spec"]["disabled"] is True and hf["metadata"]["labels"]["team"] == "ml"
    assert hf["spec"]["supportedModelFormats"][0] == {"name": "huggingface", "version": "1", "autoSelect": False, "priority": 5}
    assert hf["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert hf["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert "annotations" not in hf["spec"]
    c = container(hf, "kserve-container")
    assert c["image"] == "registry.example.com/ml/hf:1.2.3" and c["imagePullPolicy"] == "Always"
    assert c["args"][-1] == "--max_request_items=4"
    assert {"--max_length=256", "--task=text_embedding", "--max_batch_size=8", "--disable_lower_case",
            "--trust_remote_code"} <= set(c["args"])
    assert {"name": "FOO", "value": "bar"} in c["env"]
    assert c["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    assert "livenessProbe" not in c
    t = container(runtimes[TRITON], "kserve-container")
    assert t["image"] == f"triton@{digest}"
    assert {"--preferred_batch_sizes=4,8", "--max_queue_delay_us=100", "--instance_count=2",
            "--exit_timeout_s=20"} <= set(t["args"])


def test_notes_tell_the_next_step():
    from helm_python import Config

    cfg = Config(storage_driver="memory")
    rel = cfg.install(str(CHART), "hf", None, dry_run="client")
    notes = rel["notes"]
    assert "kubectl get clusterservingruntimes kserve-huggingface kserve-huggingface-triton" in notes
    assert "storageUri" in notes and "examples/" in notes


_HELP_FLAGS: dict[str, set[str]] = {}


def _module_flags(module: str) -> set[str]:
    """Every option string the module's own argument parser knows (from its --help)."""
    import re
    import subprocess
    import sys

    if module not in _HELP_FLAGS:
        proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        _HELP_FLAGS[module] = set(re.findall(r"(?<![\w-])(--[A-Za-z0-9][\w-]*)", proc.stdout))
    return _HELP_FLAGS[module]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["defaults", "model-mount"])
def test_every_rendered_flag_is_an_exact_option_of_its_module(rendered, name):
    """argparse accepts unambiguous abbreviations, so a misspelt flag that happens to be a prefix
    would start fine; compare each rendered flag with the module's option strings instead."""
    custom = render({"huggingface": {"args": {"task": "text_embedding", "maxLength": 128, "disableLowerCase": True,
                                              "disableSpecialTokens": True, "returnProbabilities": True,
                                              "trustRemoteCode": True}},
                     "triton": {"args": {"task": "text_embedding", "maxLength": 128, "disableLowerCase": True,
                                         "disableSpecialTokens": True, "returnProbabilities": True,
                                         "trustRemoteCode": True, "exitTimeoutSeconds": 5}}})
    for obj in rendered[name] + custom:
        for c in obj["spec"]["containers"]:
            module = c["command"][-1]
            known = _module_flags(module)
            flags = {a.split("=", 1)[0] for a in c["args"] if a.startswith("--")}
            assert flags <= known, f"{obj['metadata']['name']}/{c['name']}: {sorted(flags - known)} unknown to {module}"
