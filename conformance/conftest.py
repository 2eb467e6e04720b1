"""pytest options, the target, its fixtures, and the plugins of the conformance suite (conformance/reporting.py).

    pytest conformance                                   # local: both runtimes from the rendered chart
    pytest conformance --target http://127.0.0.1:8080     # an existing endpoint
    pytest conformance --target http://a:8080,http://b:9080 --runtime huggingface,triton --triton-url http://b:8000
    KUBECONFIG=... pytest conformance --target cluster    # install the chart, deploy the examples, port-forward
    pytest conformance -m "v1 or openai"                  # one group or several

JUnit XML and a markdown summary land in reports/conformance/ (``--reports-dir``), named after the target.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from conformance.chart import CHART_DIR, REPO
from conformance.reporting import GROUPS, ExecutedFloor, MarkdownSummary
from conformance.targets import have_gpu, make_target
from conformance.targets.deployment import MINILM_DIM, Deployment, Target


def pytest_addoption(parser):
    g = parser.getgroup("conformance")
    g.addoption("--target", default=os.environ.get("CONFORMANCE_TARGET", "local"),
                help="local (default) | pods (podman pods of the built images) | cluster | http://host:port[,...]")
    g.addoption("--model-name", default="", help="model name(s) served at --target URLs, comma separated (default minilm)")
    g.addoption("--runtime", default="", help="runtime behind each URL: huggingface | triton (comma separated)")
    g.addoption("--grpc-target", default="", help="V2 gRPC host:port per URL (default: the HTTP port + 1)")
    g.addoption("--triton-url", default="", help="Triton's own HTTP address (statistics API) per URL, for the batching tests")
    g.addoption("--embedding-dim", type=int, default=MINILM_DIM, help="expected embedding dimension of a URL target (0: any)")
    g.addoption("--namespace", default="hfserve-conformance", help="cluster mode: namespace to install into")
    g.addoption("--chart", default=str(CHART_DIR), help="cluster mode: chart path")
    g.addoption("--examples", default="", help="cluster mode: comma separated globs of InferenceService manifests "
                                               "(default: the chart's examples/*-cpu.yaml)")
    g.addoption("--keep-cluster", action="store_true", help="cluster mode: leave the release and examples installed")
    g.addoption("--atol", type=float, default=1e-4,
                help="float tolerance of parity and consistency checks (1e-4 for float32; ~5e-3 for float16 on a GPU)")
    g.addoption("--require-gpu", action="store_true", help="fail the gpu group instead of skipping it without a GPU")
    g.addoption("--recovery-timeout", type=float, default=180.0, help="seconds a runtime may take to recover after a restart")
    g.addoption("--reports-dir", default=str(REPO / "reports" / "conformance"), help="where JUnit XML and markdown go")
    g.addoption("--min-executed", type=int, default=None,
                help="fail the run when fewer tests execute (default: the target's floors, in total and per "
                     "group: conformance/targets; 1 when -m, -k or test ids select a subset)")


def cluster_access() -> str:
    """The kubeconfig of a kube context that answers, or raise pytest.UsageError saying why there is none.

    KUBECONFIG wins; kubectl's default ~/.kube/config (where kind writes) is used when it is unset."""
    path = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    first = path.split(os.pathsep)[0]
    if not Path(first).is_file():
        raise pytest.UsageError(f"--target cluster: no kubeconfig ({first} does not exist; set KUBECONFIG)")
    try:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=first)
        version = client.VersionApi(api).get_code(_request_timeout=15)
    except Exception as exc:  # noqa: BLE001 - any reason the context is unusable is reported as is
        raise pytest.UsageError(f"--target cluster: the kube context in {first} does not answer: {exc}") from exc
    os.environ["KUBECONFIG"] = path  # kubectl and helm, started by the cluster pool, use the same context
    print(f"conformance: cluster {version.git_version} via {first}")
    return path


def target_slug(target: str) -> str:
    if target in ("local", "cluster"):
        return target
    return re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"^https?://", "", target)).strip("_") or "target"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for name, doc in GROUPS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    from conformance import protocol

    protocol.ATOL = config.getoption("--atol")
    if config.getoption("--target") == "cluster" and not config.option.collectonly:
        cluster_access()
    config.pluginmanager.register(ExecutedFloor(config, lambda: _target(config)), "conformance-executed-floor")
    reports = Path(config.getoption("--reports-dir"))
    reports.mkdir(parents=True, exist_ok=True)
    slug = target_slug(config.getoption("--target"))
    if getattr(config.option, "xmlpath", None) is None and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(reports / f"{slug}.xml")
    summary = MarkdownSummary(config, reports / f"{slug}.md", lambda: getattr(config, "_conformance_target", None))
    config.pluginmanager.register(summary, "conformance-markdown")
    # A SIGTERM (CI cancel, `timeout`) must still run the fixtures' teardown, which stops every server.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))


def _target(config) -> Target:
    if not hasattr(config, "_conformance_target"):
        config._conformance_target = make_target(config)
    return config._conformance_target


# Fixture name -> the target's deployment ids for it (one id, or a pair of ids).
DEPLOYMENT_FIXTURES = {
    "minilm": "minilm_ids", "triton_minilm": "triton_ids", "pair": "pair_ids",
    "tiny_pair": "tiny_pair_ids", "tiny": "tiny_ids", "generative": "generative_ids",
}


def _param_id(name: str, param) -> str:
    if name == "tiny_pair":
        return param[0].split("-tiny-")[1]
    return "-vs-".join(param) if isinstance(param, tuple) else param


def pytest_generate_tests(metafunc):
    target = _target(metafunc.config)
    # An empty list is not parametrized at all: pytest_collection_modifyitems deselects those tests.
    for name, ids_of in DEPLOYMENT_FIXTURES.items():
        if name in metafunc.fixturenames and (params := getattr(target, ids_of)()):
            metafunc.parametrize(name, params, ids=[_param_id(name, p) for p in params], indirect=True)


def pytest_collection_modifyitems(config, items):
    target = _target(config)
    keep, drop = [], []
    # Skips decided here are taken before any fixture runs, so no pod starts just to be skipped.
    gpu = None
    for item in items:
        if item.get_closest_marker("gpu") and not config.getoption("--require-gpu"):
            gpu = gpu or have_gpu()
            if not gpu[0]:
                item.add_marker(pytest.mark.skip(reason=gpu[1]))
        if item.get_closest_marker("cluster") and target.kind != "cluster":
            item.add_marker(pytest.mark.skip(reason="only on a cluster: --target cluster"))
    for item in items:
        if item.get_closest_marker("pods") and target.kind != "pods":
            drop.append(item)  # checks of the podman pods themselves: --target pods only
            target.not_applicable.append((item.nodeid, "checks the podman pods: --target pods only"))
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        # Parity needs two endpoints and the task coverage uses tiny models built here: with one
        # URL (or on a cluster) those tests do not apply. They are deselected and listed in the report.
        missing = [n for n in ("minilm", "triton_minilm", "pair", "tiny", "tiny_pair", "generative")
                   if n in item.fixturenames and n not in params]
        if missing:
            drop.append(item)
            why = ("needs two endpoints (--target URL1,URL2)" if "pair" in missing
                   else "needs a Triton runtime target (--runtime triton)" if "triton_minilm" in missing
                   else "uses tiny models built on this machine: --target local only")
            target.not_applicable.append((item.nodeid, why))
            continue
        keep.append(item)
        if target.local is not None and not item.get_closest_marker("skip"):
            for key in ("minilm", "triton_minilm", "tiny", "generative"):
                if key in params:
                    target.local.needed.add(params[key])
            for key in ("pair", "tiny_pair"):
                if key in params:
                    target.local.needed.update(params[key])
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # Tests that kill and restart containers go last, so a slow recovery cannot disturb the rest.
    items.sort(key=lambda it: 1 if it.get_closest_marker("degradation") else 0)


def pytest_sessionfinish(session, exitstatus):
    """A failed local run keeps the containers' logs beside the reports."""
    target = getattr(session.config, "_conformance_target", None)
    if target is not None and target.local is not None and session.testsfailed:
        logs = Path(session.config.getoption("--reports-dir")) / "logs"
        written = target.local.save_logs(logs)
        if written:
            print(f"\ncontainer logs of the failed run: {logs}/")


def pytest_unconfigure(config):
    target = getattr(config, "_conformance_target", None)
    if target is not None:
        target.close()


@pytest.fixture(scope="session")
def target(request) -> Target:
    return _target(request.config)


def _deployment_fixture(name: str):
    @pytest.fixture(scope="session", name=name)
    def deployment(request, target) -> Deployment | tuple[Deployment, Deployment]:
        try:
            if isinstance(request.param, tuple):
                return tuple(target.get(dep_id) for dep_id in request.param)
            return target.get(request.param)
        except LookupError as exc:  # e.g. the cluster's examples deploy no such runtime
            pytest.fail(str(exc))

    return deployment


minilm = _deployment_fixture("minilm")
triton_minilm = _deployment_fixture("triton_minilm")
pair = _deployment_fixture("pair")
tiny_pair = _deployment_fixture("tiny_pair")
tiny = _deployment_fixture("tiny")
generative = _deployment_fixture("generative")


@pytest.fixture
def recovery_timeout(request) -> float:
    return request.config.getoption("--recovery-timeout")


@pytest.fixture(autouse=True)
def _pods_alive(request):
    """Local target: a pod whose container died (outside the degradation tests) fails the test
    with the container's exit code and log tail, not with a bare "connection refused"."""
    target = _target(request.config)
    if target.local is None or not hasattr(request.node, "callspec"):
        return
    ids = []
    for key, value in request.node.callspec.params.items():
        if key in ("minilm", "triton_minilm", "tiny", "generative"):
            ids.append(value)
        elif key in ("pair", "tiny_pair"):
            ids.extend(value)
    for dep_id in ids:
        dep = target.local.deployments.get(dep_id)
        if dep is not None:
            try:
                dep.control.check_running()
            except Exception as exc:  # noqa: BLE001 - PodError, with the log tail
                pytest.fail(f"{dep_id}: {exc}"[:3000])


@pytest.fixture(autouse=True)
def _require_gpu(request):
    """--require-gpu: a gpu test fails without a GPU (without the option it is skipped at collection)."""
    if request.node.get_closest_marker("gpu") and request.config.getoption("--require-gpu"):
        ok, reason = have_gpu()
        if not ok:
            pytest.fail(f"--require-gpu: {reason}")
