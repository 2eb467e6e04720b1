"""pytest options, targets, fixtures and the markdown report of the conformance suite.

    pytest conformance                                   # local: both runtimes from the rendered chart
    pytest conformance --target http://127.0.0.1:8080     # an existing endpoint
    pytest conformance --target http://a:8080,http://b:9080 --runtime huggingface,triton --triton-url http://b:8000
    KUBECONFIG=... pytest conformance --target cluster    # install the chart, deploy the examples, port-forward
    pytest conformance -m "v1 or openai"                  # one group or several

JUnit XML and a markdown summary land in reports/conformance/ (``--reports-dir``), named after the target.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import signal
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conformance import targets as T

GROUPS = {
    "v1": "KServe V1 REST protocol",
    "v2_rest": "Open Inference Protocol (V2) over REST",
    "v2_grpc": "Open Inference Protocol (V2) over gRPC",
    "openai": "OpenAI-compatible routes, with the official openai client",
    "hf_inference": "Hugging Face Inference API (POST /) and TGI routes, with huggingface_hub.InferenceClient",
    "parity": "both runtimes give the same answers for the same inputs",
    "batching": "dynamic batching under concurrent load",
    "gpu": "GPU placement and batching (needs a GPU)",
    "degradation": "container failure, readiness, recovery and drain",
    "bad_input": "malformed and hostile requests get 4xx JSON errors",
    "limits": "truncation, request size and item count limits",
    "tasks": "tiny checkpoints of the other encoder and generative tasks",
    "tei": "TEI-compatible routes, reranking, truncation control and timing headers",
    "cluster": "only on a real cluster (KUBECONFIG)",
    "pods": "the images run as podman pods under the chart's security context (--target pods)",
}


def pytest_addoption(parser):
    g = parser.getgroup("conformance")
    g.addoption("--target", default=os.environ.get("CONFORMANCE_TARGET", "local"),
                help="local (default) | pods (podman pods of the built images) | cluster | http://host:port[,...]")
    g.addoption("--model-name", default="", help="model name(s) served at --target URLs, comma separated (default minilm)")
    g.addoption("--runtime", default="", help="runtime behind each URL: huggingface | triton (comma separated)")
    g.addoption("--grpc-target", default="", help="V2 gRPC host:port per URL (default: the HTTP port + 1)")
    g.addoption("--triton-url", default="", help="Triton's own HTTP address (statistics API) per URL, for the batching tests")
    g.addoption("--embedding-dim", type=int, default=T.MINILM_DIM, help="expected embedding dimension of a URL target (0: any)")
    g.addoption("--namespace", default="hfserve-conformance", help="cluster mode: namespace to install into")
    g.addoption("--chart", default=str(T.REPO / "charts" / "kserve-huggingface-runtimes"), help="cluster mode: chart path")
    g.addoption("--examples", default="", help="cluster mode: comma separated globs of InferenceService manifests "
                                               "(default: the chart's examples/*-cpu.yaml)")
    g.addoption("--keep-cluster", action="store_true", help="cluster mode: leave the release and examples installed")
    g.addoption("--atol", type=float, default=1e-4,
                help="float tolerance of parity and consistency checks (1e-4 for float32; ~5e-3 for float16 on a GPU)")
    g.addoption("--require-gpu", action="store_true", help="fail the gpu group instead of skipping it without a GPU")
    g.addoption("--recovery-timeout", type=float, default=180.0, help="seconds a runtime may take to recover after a restart")
    g.addoption("--reports-dir", default=str(T.REPO / "reports" / "conformance"), help="where JUnit XML and markdown go")
    g.addoption("--min-executed", type=int, default=None,
                help="fail the run when fewer tests execute (default: the target's floor, EXECUTED_FLOORS; "
                     "1 when -m, -k or test ids select a subset)")


# A full run that executes fewer tests than this fails: a target that silently skips or deselects
# everything (no cluster, a broken fixture, a lost group) must not report green. conformance/README.md.
EXECUTED_FLOORS = {"local": 175, "cluster": 150, "url": 40}


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
    config.pluginmanager.register(ExecutedFloor(config), "conformance-executed-floor")
    reports = Path(config.getoption("--reports-dir"))
    reports.mkdir(parents=True, exist_ok=True)
    slug = target_slug(config.getoption("--target"))
    if getattr(config.option, "xmlpath", None) is None and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(reports / f"{slug}.xml")
    config.pluginmanager.register(MarkdownSummary(config, reports / f"{slug}.md"), "conformance-markdown")
    # A SIGTERM (CI cancel, `timeout`) must still run the fixtures' teardown, which stops every server.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))


# --------------------------------------------------------------------------------------------
# the target


class Target:
    def __init__(self, config):
        self.config = config
        self.name = config.getoption("--target")
        self.kubeconfig = os.environ.get("KUBECONFIG", "")
        self.kind = self.name if self.name in ("local", "pods", "cluster") else "url"
        self.local: T.LocalPool | None = None
        self.cluster: T.ClusterPool | None = None
        self.urls: dict[str, T.Deployment] = {}
        self.not_applicable: list[tuple[str, str]] = []
        self._tmp = None
        if self.kind == "local":
            self._tmp = tempfile.TemporaryDirectory(prefix="hfserve-conformance-")
            self.local = T.LocalPool(Path(self._tmp.name))
        elif self.kind == "pods":  # the MiniLM deployments as podman pods of the images (make pod-test)
            from conformance.podman_pod import PodmanPod

            self._tmp = tempfile.TemporaryDirectory(prefix="hfserve-pods-")
            self.local = T.LocalPool(Path(self._tmp.name), startup_timeout=600.0, pod_factory=PodmanPod.start)
        elif self.kind == "url":
            split = lambda opt: [v for v in config.getoption(opt).split(",") if v]  # noqa: E731
            dim = config.getoption("--embedding-dim") or None
            for d in T.url_deployments(split("--target"), split("--model-name"), split("--runtime"),
                                       split("--grpc-target"), split("--triton-url"), dim):
                self.urls[d.id] = d
        if self.kind == "cluster":
            examples = config.getoption("--examples") or str(Path(config.getoption("--chart")) / "examples" / "*-cpu.yaml")
            self.cluster = T.ClusterPool(config.getoption("--namespace"), Path(config.getoption("--chart")),
                                         [e for e in examples.split(",") if e])

    # deployment ids per fixture, at collection time
    def minilm_ids(self) -> list[str]:
        if self.kind in ("local", "pods"):
            return ["huggingface", "triton"]
        if self.kind == "cluster":
            return ["huggingface", "triton"]
        return list(self.urls)

    def triton_ids(self) -> list[str]:
        if self.kind == "url":
            return [i for i, d in self.urls.items() if d.runtime == "triton"]
        return ["triton"]

    def pair_ids(self) -> list[tuple[str, str]]:
        if self.kind == "url":
            ids = list(self.urls)
            return [(ids[0], ids[1])] if len(ids) >= 2 else []
        return [("huggingface", "triton")]

    def tiny_pair_ids(self) -> list[tuple[str, str]]:
        if self.kind != "local":
            return []
        return [(f"huggingface-tiny-{k}", f"triton-tiny-{k}") for k in T.TINY_ENCODER_KINDS]

    def tiny_ids(self) -> list[str]:
        if self.kind != "local":
            return []
        return [i for pair in self.tiny_pair_ids() for i in pair]

    def generative_ids(self) -> list[str]:
        return [f"huggingface-tiny-{k}" for k in T.TINY_GENERATIVE_KINDS] if self.kind == "local" else []

    def get(self, dep_id: str) -> T.Deployment:
        if self.kind in ("local", "pods"):
            return self.local.get(dep_id)
        if self.kind == "cluster":
            try:
                return self.cluster.get(dep_id)
            except LookupError as exc:
                pytest.fail(str(exc))
        return self.urls[dep_id]

    def close(self) -> None:
        if self.local:
            self.local.close()
        if self.cluster:
            self.cluster.close(uninstall=not self.config.getoption("--keep-cluster"))
        if self._tmp:
            self._tmp.cleanup()


def pytest_generate_tests(metafunc):
    target = _target(metafunc.config)
    names = metafunc.fixturenames
    # An empty list is not parametrized at all: pytest_collection_modifyitems deselects those tests.
    if "minilm" in names and (ids := target.minilm_ids()):
        metafunc.parametrize("minilm", ids, ids=ids, indirect=True)
    if "triton_minilm" in names and (ids := target.triton_ids()):
        metafunc.parametrize("triton_minilm", ids, ids=ids, indirect=True)
    if "pair" in names and (pairs := target.pair_ids()):
        metafunc.parametrize("pair", pairs, ids=["-vs-".join(p) for p in pairs], indirect=True)
    if "tiny_pair" in names and (pairs := target.tiny_pair_ids()):
        metafunc.parametrize("tiny_pair", pairs, ids=[p[0].split("-tiny-")[1] for p in pairs], indirect=True)
    if "tiny" in names and (ids := target.tiny_ids()):
        metafunc.parametrize("tiny", ids, ids=ids, indirect=True)
    if "generative" in names and (ids := target.generative_ids()):
        metafunc.parametrize("generative", ids, ids=ids, indirect=True)


def _target(config) -> Target:
    if not hasattr(config, "_conformance_target"):
        config._conformance_target = Target(config)
    return config._conformance_target


def pytest_collection_modifyitems(config, items):
    target = _target(config)
    keep, drop = [], []
    # Skips decided here are taken before any fixture runs, so no pod starts just to be skipped.
    gpu = None
    for item in items:
        if item.get_closest_marker("gpu") and not config.getoption("--require-gpu"):
            gpu = gpu or T.have_gpu()
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


@pytest.fixture(scope="session")
def minilm(request, target) -> T.Deployment:
    return target.get(request.param)


@pytest.fixture(scope="session")
def triton_minilm(request, target) -> T.Deployment:
    return target.get(request.param)


@pytest.fixture(scope="session")
def pair(request, target) -> tuple[T.Deployment, T.Deployment]:
    a, b = request.param
    return target.get(a), target.get(b)


@pytest.fixture(scope="session")
def tiny_pair(request, target) -> tuple[T.Deployment, T.Deployment]:
    a, b = request.param
    return target.get(a), target.get(b)


@pytest.fixture(scope="session")
def tiny(request, target) -> T.Deployment:
    return target.get(request.param)


@pytest.fixture(scope="session")
def generative(request, target) -> T.Deployment:
    return target.get(request.param)


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
                dep.control.pod.check_running()
            except Exception as exc:  # noqa: BLE001 - PodError, with the log tail
                pytest.fail(f"{dep_id}: {exc}"[:3000])


@pytest.fixture(autouse=True)
def _gates(request):
    if request.node.get_closest_marker("gpu"):
        ok, reason = T.have_gpu()
        if not ok:
            if request.config.getoption("--require-gpu"):
                pytest.fail(f"--require-gpu: {reason}")
            pytest.skip(reason)
    if request.node.get_closest_marker("cluster") and _target(request.config).kind != "cluster":
        pytest.skip("only on a cluster: --target cluster")


# --------------------------------------------------------------------------------------------
# the executed-test floor


class ExecutedFloor:
    """Counts the tests whose body ran (passed or failed, not skipped) and fails a run below the floor."""

    def __init__(self, config):
        self.config = config
        self.executed = 0
        self.floor = config.getoption("--min-executed")
        if self.floor is None:
            name = config.getoption("--target")
            kind = name if name in ("local", "cluster") else "url"
            self.floor = 1 if self._subset(config) else EXECUTED_FLOORS[kind]
        self.message = ""

    @staticmethod
    def _subset(config) -> bool:
        """-m, -k, --deselect or a path narrower than the conformance directory select a part of the suite."""
        here = Path(__file__).resolve().parent
        narrower = any(Path(arg.split("::")[0]).resolve() != here for arg in config.args)
        return bool(config.option.markexpr or config.option.keyword or config.option.deselect or narrower)

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and not report.skipped:
            self.executed += 1

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if self.config.option.collectonly or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED,
                                                                pytest.ExitCode.NO_TESTS_COLLECTED):
            return
        if self.executed < self.floor:
            self.message = (f"conformance: only {self.executed} tests executed, below the floor of {self.floor} for "
                            f"target {self.config.getoption('--target')!r} (see conformance/README.md); failing")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if self.message:
            terminalreporter.write_line(self.message, red=True, bold=True)


# --------------------------------------------------------------------------------------------
# markdown summary


class MarkdownSummary:
    """Writes a short markdown report: counts per group, then every failure and skip with its reason."""

    def __init__(self, config, path: Path):
        self.config, self.path = config, path
        self.results: dict[str, dict] = {}
        self.started = time.time()

    @staticmethod
    def _group(report) -> str:
        if "tasks" in report.keywords:  # the task tests also carry their protocol's mark; file them as tasks
            return "tasks"
        for name in GROUPS:
            if name in report.keywords and name not in ("cluster",):
                return name
        return "cluster" if "cluster" in report.keywords else "other"

    def pytest_runtest_logreport(self, report):
        rec = self.results.setdefault(report.nodeid, {"group": self._group(report), "outcome": "passed", "why": "",
                                                      "props": []})
        if report.when == "call" and report.user_properties:
            rec["props"] = list(report.user_properties)
        if report.when == "call" or report.outcome != "passed":
            if report.skipped:
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                rec.update(outcome="skipped", why=reason.removeprefix("Skipped: "))
            elif report.failed:
                crash = getattr(report.longrepr, "reprcrash", None)
                msg = crash.message if crash is not None else str(report.longrepr)
                kind = "failed" if report.when == "call" else f"error in {report.when}"
                if rec["outcome"] != "failed":
                    rec.update(outcome="failed", why=f"{kind}: {msg}")
            elif report.when == "call" and rec["outcome"] not in ("failed", "skipped"):
                rec.update(outcome="passed", why="")

    def pytest_sessionfinish(self, session, exitstatus):
        target = self.config.getoption("--target")
        counts = defaultdict(lambda: defaultdict(int))
        for rec in self.results.values():
            counts[rec["group"]][rec["outcome"]] += 1
        total = defaultdict(int)
        for c in counts.values():
            for k, v in c.items():
                total[k] += v
        lines = [
            f"# Conformance report: `{target}`",
            "",
            f"- finished: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}, "
            f"took {time.time() - self.started:.0f} s, pytest exit status {int(session.exitstatus)}",
            f"- **{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped**",
            f"- JUnit XML: `{Path(self.config.option.xmlpath).name if getattr(self.config.option, 'xmlpath', None) else '-'}`",
            "",
            "| group | what it checks | passed | failed | skipped |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for group in list(GROUPS) + ["other"]:
            if group in counts:
                c = counts[group]
                lines.append(f"| {group} | {GROUPS.get(group, '')} | {c['passed']} | {c['failed']} | {c['skipped']} |")
        for outcome, title in (("failed", "Failed"), ("skipped", "Skipped")):
            recs = [(n, r) for n, r in self.results.items() if r["outcome"] == outcome]
            if recs:
                lines += ["", f"## {title}", ""]
                for nodeid, rec in recs:
                    why = " ".join(rec["why"].split())[:400].replace("|", "\\|")
                    lines.append(f"- `{nodeid}`: {why}")
        floor = self.config.pluginmanager.get_plugin("conformance-executed-floor")
        if floor is not None and floor.message:
            lines += ["", f"**{floor.message}**"]
        measured = [(n, r["props"]) for n, r in self.results.items() if r.get("props")]
        if measured:
            lines += ["", "## Measurements", ""]
            for nodeid, props in measured:
                lines.append(f"- `{nodeid}`: " + ", ".join(f"{k} = {v}" for k, v in props))
        na = getattr(self.config, "_conformance_target", None)
        if na is not None and na.not_applicable:
            lines += ["", "## Not applicable to this target (deselected)", ""]
            lines += [f"- `{n}`: {why}" for n, why in na.not_applicable]
        passed = [n for n, r in self.results.items() if r["outcome"] == "passed"]
        if passed:
            lines += ["", "## Passed", "", "<details><summary>" + f"{len(passed)} tests" + "</summary>", ""]
            lines += [f"- `{n}`" for n in passed]
            lines += ["", "</details>"]
        self.path.write_text("\n".join(lines) + "\n")

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.write_line(f"conformance summary: {self.path}")
