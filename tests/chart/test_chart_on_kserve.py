"""The chart on KServe and Knative as their source behaves (conformance.kserve_model), with no
cluster: each finding of issue 8 (docs: ../shared/reference/kserve-behaviour.md in the issue)
is a test here, and the whole matrix (every ci/ scenario x example x mode x KServe version)
is run through admission, selection and pod assembly.

The model stands in for a cluster (none exists here); tests/chart/test_chart_cluster.py runs
the same chart on a real one when KUBECONFIG is set."""

from __future__ import annotations

import copy

import pytest
import yaml

from conformance.kserve_model import (
    DEFAULT_FEATURES,
    AdmissionError,
    InvalidPredictorSpec,
    KnativeRejected,
    NoSupportingRuntime,
    assemble_pod,
    builtin_runtimes,
    knative_problems,
    raw_service_ports,
    scrape_target,
    select_runtime,
)
from conformance.kserve_model.admission import install
from conformance.kserve_model.pod_assembly import controller_pod_spec

from .chartlib import CHART, render
from .kserve_matrix import HF, MODES, TRITON, VERSIONS, examples, isvc, listening, runtimes_of, scenarios

SCENARIOS = {s.name: s for s in scenarios()}
README = (CHART / "README.md").read_text()


def _cluster(version: str, scenario: str = "defaults") -> list[dict]:
    """KServe's built-in runtimes plus the chart, installed through the webhook."""
    return install(list(runtimes_of(scenario).values()), builtin_runtimes(version), version)


def _pinned_isvcs(runtime: str) -> list[dict]:
    """Every example that pins `runtime`, plus a minimal one."""
    out = [e for e in examples().values() if e["spec"]["predictor"]["model"].get("runtime") == runtime]
    return out + [isvc("plain", runtime)]


# ---- (A1) installs beside KServe's built-in runtimes ----------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_chart_installs_beside_kserve_builtin_runtimes(version, scenario):
    cluster = _cluster(version, scenario)
    assert {HF, TRITON} <= {r["metadata"]["name"] for r in cluster}


@pytest.mark.parametrize("version", VERSIONS)
def test_swapping_the_default_priorities_still_installs(version):
    """The README's way of making Triton the auto-selected runtime must pass the webhook too."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    hf, tr = values["huggingface"]["priority"], values["triton"]["priority"]
    objs = render({"huggingface": {"autoSelect": True, "priority": tr}, "triton": {"autoSelect": True, "priority": hf}})
    cluster = install(objs, builtin_runtimes(version), version)
    assert select_runtime(isvc("auto"), cluster)["metadata"]["name"] == TRITON


@pytest.mark.parametrize("priority", [1, 2])
def test_an_opt_in_priority_that_collides_with_kserve_is_refused_at_render(priority):
    """KServe ships huggingface priorities 1 and 2: the chart refuses them before the webhook does."""
    with pytest.raises(Exception, match="collides with KServe's built-in"):
        render({"huggingface": {"autoSelect": True, "priority": priority}})


def test_two_opt_in_runtimes_with_one_priority_are_refused_at_render():
    with pytest.raises(Exception, match="priority are equal"):
        render({"huggingface": {"autoSelect": True, "priority": 5}, "triton": {"autoSelect": True, "priority": 5}})
    objs = render({"huggingface": {"autoSelect": True, "priority": 5}, "triton": {"autoSelect": False, "priority": 5}})
    install(objs, builtin_runtimes(VERSIONS[-1]), VERSIONS[-1])  # only auto-selected formats compete


# ---- (B8) no takeover of InferenceServices that did not ask ---------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_by_default_format_only_inference_services_keep_kserves_runtime(version):
    cluster = _cluster(version)
    assert select_runtime(isvc("llm"), cluster)["metadata"]["name"] == "kserve-huggingfaceserver"
    v2 = isvc("llm-v2", protocolVersion="v2")
    assert select_runtime(v2, cluster)["metadata"]["name"] == "kserve-huggingfaceserver"


@pytest.mark.parametrize("version", VERSIONS)
def test_opt_in_auto_selection_picks_the_in_process_runtime(version):
    cluster = _cluster(version, "autoselect")
    assert select_runtime(isvc("auto"), cluster)["metadata"]["name"] == HF
    assert "NOTES" and "autoSelect" in README


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_pinned_inference_services_get_their_runtime(version, runtime):
    cluster = _cluster(version)
    for item in _pinned_isvcs(runtime):
        assert select_runtime(item, cluster)["metadata"]["name"] == runtime
    # a protocol the runtime does not list is refused when pinned
    with pytest.raises(NoSupportingRuntime):
        select_runtime(isvc("x", runtime, protocolVersion="grpc-v1"), cluster)


def test_notes_state_the_selection_policy():
    from helm_python import Config

    notes = Config(storage_driver="memory").install(str(CHART), "hf", None, dry_run="client")["notes"]
    assert "runtime: kserve-huggingface" in notes and "# runtime:" not in notes
    assert "autoSelect" in notes


# ---- the matrix: every scenario x example x mode x version ---------------------------------


def _cases():
    for scenario in SCENARIOS.values():
        for mode in scenario.modes:
            for version in VERSIONS:
                yield pytest.param(scenario.name, mode, version, id=f"{scenario.name}-{mode}-{version}")


@pytest.mark.parametrize("scenario,mode,version", list(_cases()))
def test_matrix_every_pod_is_admitted_and_consistent(scenario, mode, version):
    s = SCENARIOS[scenario]
    cluster = _cluster(version, scenario)
    for name, runtime in runtimes_of(scenario).items():
        for item in _pinned_isvcs(name):
            assert select_runtime(item, cluster)["metadata"]["name"] == name
            pod = assemble_pod(runtime, item, mode, version, knative_features=s.knative_flags)
            _check_pod(pod, runtime, item, mode)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_matrix_declared_knative_flags_are_needed(scenario):
    """A scenario that declares Knative flags is refused on a stock Knative (so the flags in its
    header, and in the README, are really needed); one that declares none is accepted there."""
    s = SCENARIOS[scenario]
    refused = []
    for name, runtime in runtimes_of(scenario).items():
        for item in _pinned_isvcs(name):
            try:
                assemble_pod(runtime, item, "Serverless", VERSIONS[-1])
            except KnativeRejected as exc:
                refused.append(str(exc))
    assert bool(refused) == bool(s.knative_flags), refused
    for flag in s.knative_flags:
        assert flag in README, f"README does not document the Knative flag {flag}"


def _check_pod(pod, runtime, item, mode):
    name = item["metadata"]["name"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    ours = [c for c in pod["spec"]["containers"] if c["name"] != "queue-proxy"]
    assert ours[0]["name"] == "kserve-container"  # KServe's order
    text = yaml.safe_dump(ours)
    assert "{{" not in text, "a placeholder was left"
    for c in ours:
        assert f"--model_name={name}" in c["args"]
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
        assert mounts["/mnt/models"]["readOnly"] is True
    ports = listening(pod)
    if mode == "RawDeployment":
        # every readiness probe, the defaulted ones included, reaches something that listens
        for c in ours:
            probe = c.get("readinessProbe")
            assert probe, f"{c['name']} has no readiness probe"
            handler = probe.get("tcpSocket") or probe.get("httpGet")
            if handler:
                assert handler["port"] in ports, f"{c['name']} readiness probes port {handler['port']}: nothing listens"
                assert ports[handler["port"]][2] != "127.0.0.1", "kubelet probes the pod IP, not loopback"
        service = raw_service_ports(pod)
        reachable = {p["targetPort"] for p in service}
    else:
        serving = [c for c in ours if c.get("ports")]
        reachable = {serving[0]["ports"][0]["containerPort"]}
        live = serving[0].get("livenessProbe")
        if live and live.get("httpGet"):
            port = live["httpGet"]["port"]
            assert ports.get(port, (None, None))[1] == "http", \
                f"Knative points the HTTP liveness probe at {port}, which does not speak HTTP/1.1"
    # every protocol the runtime advertises is reachable through the InferenceService
    kinds = {ports[p][1] for p in reachable if p in ports}
    for proto in runtime["spec"].get("protocolVersions") or []:
        need = "grpc" if proto.startswith("grpc") else "http"
        assert need in kinds, f"{proto} is advertised but the ISVC routes only to {sorted(kinds)}"
    # Prometheus annotations lead to the runtime's /metrics
    if runtime["spec"].get("annotations", {}).get("prometheus.kserve.io/port"):
        target = scrape_target(pod)
        assert target["serves"] in ("runtime", "runtime+queue-proxy"), target
    assert containers  # the pod has containers


# ---- (A2) GPU examples and scheduling values in Serverless ----------------------------------


@pytest.mark.parametrize("example", sorted(examples()))
def test_every_example_is_valid_on_a_stock_knative_or_pins_raw_mode(example):
    item = examples()[example]
    runtime = runtimes_of("defaults")[item["spec"]["predictor"]["model"]["runtime"]]
    pod = assemble_pod(runtime, item, "Serverless", VERSIONS[-1])  # raises KnativeRejected if refused
    assert pod["spec"]["containers"]


def test_scheduling_values_are_refused_by_a_stock_knative_and_the_flags_are_documented():
    runtime = runtimes_of("gpu-scheduling")[HF]
    with pytest.raises(KnativeRejected, match="podspec-nodeselector|podspec-tolerations|podspec-affinity"):
        assemble_pod(runtime, isvc("g", HF), "Serverless", VERSIONS[-1])
    for flag in ("kubernetes.podspec-tolerations", "kubernetes.podspec-nodeselector", "kubernetes.podspec-affinity"):
        assert flag in README


# ---- (A3) exposedPort grpc under Knative -----------------------------------------------------


@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_grpc_exposed_liveness_probe_survives_knatives_port_rewrite(runtime):
    rt = runtimes_of("grpc")[runtime]
    pod = assemble_pod(rt, isvc("g", runtime), "Serverless", VERSIONS[-1])
    serving = next(c for c in pod["spec"]["containers"] if c.get("ports"))
    live = serving.get("livenessProbe") or {}
    ports = listening(pod)
    if "httpGet" in live:
        assert ports[live["httpGet"]["port"]][1] == "http"
    else:
        assert "tcpSocket" in live and live["tcpSocket"]["port"] in ports


# ---- (A4) probes on the Triton container ----------------------------------------------------


def test_default_triton_pod_has_no_probe_on_the_non_serving_container():
    rt = runtimes_of("defaults")[TRITON]
    spec = controller_pod_spec(rt, isvc("t", TRITON), VERSIONS[-1])
    assert knative_problems(spec) == []


def test_a_triton_probe_needs_multi_container_probing_and_the_readme_says_so():
    rt = {o["metadata"]["name"]: o for o in render({"triton": {"server": {"readinessProbe": {
        "exec": {"command": ["true"]}}}}})}[TRITON]
    spec = controller_pod_spec(rt, isvc("t", TRITON), VERSIONS[-1])
    assert any("multi-container-probing" in p for p in knative_problems(spec))
    assert knative_problems(spec, {"multi-container-probing": "enabled"}) == []
    assert "multi-container-probing" in README
    assert "Knative only probes" not in README  # it refuses the revision, it does not skip the probe


# ---- (B5) gRPC: reachable or not advertised --------------------------------------------------


@pytest.mark.parametrize("scenario", ["defaults", "grpc"])
@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_advertised_protocols_match_the_declared_port(scenario, runtime):
    rt = runtimes_of(scenario)[runtime]
    declared = next(c for c in rt["spec"]["containers"] if c.get("ports"))["ports"][0]["name"]
    protocols = set(rt["spec"]["protocolVersions"])
    if declared == "h2c":
        assert protocols == {"grpc-v2"}
    else:
        assert "grpc-v2" not in protocols and {"v1", "v2"} <= protocols


# ---- (B6) metrics per mode -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("example", sorted(examples()))
def test_prometheus_annotations_lead_to_the_runtime_metrics(mode, example):
    item = examples()[example]
    runtime = runtimes_of("defaults")[item["spec"]["predictor"]["model"]["runtime"]]
    try:
        pod = assemble_pod(runtime, item, mode, VERSIONS[-1])
    except KnativeRejected:
        pytest.fail(f"{example} is refused in {mode}")
    assert scrape_target(pod)["serves"] in ("runtime", "runtime+queue-proxy")


def test_serverless_with_kserve_metric_aggregation_scrapes_the_runtime_too():
    item = isvc("m", HF)
    item["metadata"]["annotations"] = {"serving.kserve.io/enable-prometheus-scraping": "true",
                                       "serving.kserve.io/enable-metric-aggregation": "true"}
    pod = assemble_pod(runtimes_of("defaults")[HF], item, "Serverless", VERSIONS[-1])
    assert scrape_target(pod)["serves"] == "runtime+queue-proxy"
    # in Standard mode KServe's scraping annotation points at queue-proxy's port, which does not exist
    raw = assemble_pod(runtimes_of("defaults")[HF], item, "RawDeployment", VERSIONS[-1])
    assert scrape_target(raw)["serves"] is None
    assert "enable-prometheus-scraping" in README and "RawDeployment" in README


# ---- (B7) raw mode: Triton's readiness follows the transformer's port -----------------------


def test_triton_readiness_follows_the_transformer_port_in_raw_mode():
    rt = runtimes_of("transformer-port")[TRITON]
    pod = assemble_pod(rt, isvc("t", TRITON), "RawDeployment", VERSIONS[-1])
    triton = next(c for c in pod["spec"]["containers"] if c["name"] == "kserve-container")
    assert triton["readinessProbe"]["tcpSocket"]["port"] == 9000
    assert listening(pod)[9000][0] == "transformer-container"


# ---- (B9) minimum KServe version ------------------------------------------------------------


def test_kserve_014_leaves_the_placeholder_in_the_transformer_so_the_floor_is_015():
    rt = runtimes_of("defaults")[TRITON]
    old = controller_pod_spec(rt, isvc("t", TRITON), "0.14")
    transformer = next(c for c in old["containers"] if c["name"] == "transformer-container")
    assert "--model_name={{.Name}}" in transformer["args"]
    new = controller_pod_spec(rt, isvc("t", TRITON), "0.15")
    transformer = next(c for c in new["containers"] if c["name"] == "transformer-container")
    assert "--model_name=t" in transformer["args"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["annotations"]["hfserve.io/kserve-min-version"] == "0.15.0"
    assert "0.15" in README


@pytest.mark.parametrize("version,ok", [("v0.14.1", False), ("0.14.0", False), ("v0.15.0", True), ("0.21.0", True)])
def test_the_chart_checks_a_stated_kserve_version(version, ok):
    if ok:
        assert render({"kserve": {"version": version}})
    else:
        with pytest.raises(Exception, match="needs KServe >= 0.15"):
            render({"kserve": {"version": version}})


# ---- (C11) placeholders: a stray `{{` --------------------------------------------------------


def test_a_stray_template_action_fails_the_isvc_and_the_schema_refuses_it():
    rt = copy.deepcopy(runtimes_of("defaults")[TRITON])
    transformer = next(c for c in rt["spec"]["containers"] if c["name"] == "transformer-container")
    transformer["args"].append("--chat_template={{ messages }}")
    with pytest.raises(InvalidPredictorSpec):
        controller_pod_spec(rt, isvc("t", TRITON), VERSIONS[-1])
    with pytest.raises(Exception, match="values don't meet the specifications of the schema"):
        render({"triton": {"transformer": {"extraArgs": ["--chat_template={{ messages }}"]}}})


# ---- (C12) schema vs CRD and env policy ------------------------------------------------------


@pytest.mark.parametrize("values", [
    {"huggingface": {"priority": 0}},
    {"huggingface": {"extraEnv": [{"name": "PYTHONPATH", "value": "/x"}]}},
    {"triton": {"server": {"extraEnv": [{"name": "PYTHONPATH", "value": "/x"}]}}},
    {"triton": {"transformer": {"extraEnv": [{"name": "PORT", "value": "1"}]}}},
])
def test_schema_refuses_what_kserve_or_knative_refuse(values):
    with pytest.raises(Exception, match="values don't meet the specifications of the schema"):
        render(values)


def test_the_model_refuses_pythonpath_from_0_18():
    rt = copy.deepcopy(runtimes_of("defaults")[HF])
    rt["spec"]["containers"][0]["env"].append({"name": "PYTHONPATH", "value": "/x"})
    install([rt], builtin_runtimes("0.15"), "0.15")
    with pytest.raises(AdmissionError, match="PYTHONPATH"):
        install([rt], builtin_runtimes("0.21"), "0.21")


# ---- (C13) README claims ----------------------------------------------------------------------


def test_readme_has_a_compatibility_section_and_no_outdated_claims():
    assert "## Compatibility" in README
    assert "some storage paths mount only" not in README
    assert "Swap the priorities" not in README
    assert "KServe uses them when an InferenceService has" not in README
    assert set(DEFAULT_FEATURES)  # the flags the README names are Knative's own keys


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_ci_scenario_lints_strict_and_states_its_modes(scenario):
    import helm_python

    s = SCENARIOS[scenario]
    assert set(s.modes) == set(MODES), "every supported configuration is checked in both modes"
    report = helm_python.lint(str(CHART), s.values or None, strict=True)
    assert [m for m in report["messages"] if m["severity"] >= 2] == [] and report["errors"] == []


@pytest.mark.parametrize("runtime", [HF, TRITON])
def test_oci_modelcar_pod_keeps_the_chart_s_security_and_paths(runtime):
    """oci:// models: KServe mounts a writable /mnt and runs both special containers as uid 1010;
    the chart's non-root settings and emptyDir paths (/mnt/tokenizer under /mnt) still hold."""
    pod = assemble_pod(runtimes_of("defaults")[runtime], isvc("o", runtime, storage="oci://r/minilm:1"),
                       "RawDeployment", VERSIONS[-1])
    for c in pod["spec"]["containers"]:
        if c["name"] in ("kserve-container", "transformer-container"):
            sc = c["securityContext"]
            assert sc["runAsUser"] == 1010 and sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
            assert {"name": "MODEL_INIT_MODE", "value": "async"} in c["env"]
            assert any(m["mountPath"] == "/mnt" for m in c["volumeMounts"])
    assert pod["spec"]["containers"][-1]["name"] == "modelcar"
