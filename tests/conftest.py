"""Shared fixtures: real models (packaged MiniLM, tiny local checkpoints) and real servers on loopback; the tiers.

Every test gets exactly one tier marker (see TIERS in pyproject.toml and `make help`): unit (no server process),
server (runtime-1 processes), triton (real tritonserver), pods (chart-built pods or a cluster), soak (minutes of
load, faults or packing). `make test-fast` is unit plus the server modules listed in FAST_SERVER_MODULES.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hfserve.packaged_model import packaged_model_dir  # noqa: E402

from devkit.tiny_models import build_tiny_model  # noqa: E402

from .servers import (  # noqa: E402
    MINILM_TRITON,
    TINY_TRITON,
    USERS,
    MiniLMTritonStack,
    ServerStarter,
    SharedRuntime1,
    SharedStacks,
    TinyTriton,
    module_of,
)

TIERS = ("unit", "server", "triton", "pods", "soak")
TIER_BY_MODULE = {
    "tests/test_chaos.py": "soak",
    "tests/chart/test_chart_pod_emulation.py": "pods",
    "tests/chart/test_chart_cluster.py": "pods",
    "tests/test_options.py": "server",  # some tests start (and expect refused) processes of their own
    "tests/triton/test_repository.py": "unit",  # repository files and refused starts: no tritonserver
    "tests/test_prometheus_scrape.py": "triton",  # runtime 1 and the MiniLM Triton stack under one Prometheus
    "tests/storage/test_storage_download.py": "server",  # moto's S3 server and an HTTP server, as processes
    "tests/storage/test_storage_serving.py": "server",
    "tests/storage/test_storage_triton.py": "triton",
}
TIER_BY_TEST = {"tests/test_loadtests.py::test_short_load_run_against_runtime_1": "soak"}
# `make test-fast`: the unit tier without its heaviest tests, a runtime-1 module that covers every protocol with one
# server, and the exposure rules (two tiny servers); the rest of `server` runs in `make test` and `make test-server`.
# 53 s here with only the first module on an idle 2-core machine (lint included).
FAST_SERVER_MODULES = ("tests/huggingface/test_embedding_server.py", "tests/huggingface/test_exposure.py")
SLOW_UNIT = ("tests/test_onnx_engine.py::test_minilm_parity_and_int8_quality",  # MiniLM export + int8: ~1 min
             "tests/test_tiny_models.py::test_building_twice_gives_identical_checkpoints",
             "tests/test_config.py::test_the_builder_takes_its_settings_as_json_on_stdin",
             "tests/test_conformance_floors.py",  # collects the conformance suite per target in subprocesses
             "tests/test_cluster_gating.py")  # three pytest and make runs in subprocesses
SERVER_FIXTURES = {"start_huggingface_runtime", "served"}


def tier_of(item) -> str:
    module = module_of(item)
    params = getattr(item, "callspec", None)
    if item.get_closest_marker("gpu_pack"):
        return "soak"
    if item.nodeid.split("[")[0] in TIER_BY_TEST:
        return TIER_BY_TEST[item.nodeid.split("[")[0]]
    if module in TIER_BY_MODULE:
        return TIER_BY_MODULE[module]
    values = {v for v in params.params.values() if isinstance(v, str)} if params is not None else set()
    if module.startswith("tests/triton/") or (module.startswith("tests/reference/") and "triton" in values):
        return "triton"
    if module.startswith("tests/reference/") and "huggingface" in values:
        return "server"
    if module.startswith("tests/huggingface/") or SERVER_FIXTURES & set(item.fixturenames):
        return "server"
    return "unit"


def pytest_collection_modifyitems(config, items):
    """Tier markers, then the tiers in order (a stable sort: file order within each): cheap failures come first,
    and the modules sharing a Triton stack (the reference's runtime 2, tests/triton) run one after another."""
    rank: dict[str, int] = {}
    for item in items:
        if not module_of(item).startswith("tests/"):
            continue
        tier = tier_of(item)
        rank[item.nodeid] = TIERS.index(tier)
        item.add_marker(tier)
        if tier == "unit" and (module_of(item) in SLOW_UNIT or item.nodeid.split("[")[0] in SLOW_UNIT):
            item.add_marker("slow")
        if module_of(item) in FAST_SERVER_MODULES or (tier == "unit" and not item.get_closest_marker("slow")):
            item.add_marker("fast")
    items.sort(key=lambda item: rank.get(item.nodeid, len(TIERS)))


def pytest_collection_finish(session):
    USERS.collected(session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    USERS.current = module_of(item)
    try:
        return (yield)
    finally:
        USERS.current = None
        USERS.torn_down(item)  # with its fixtures: a module's are finalized after its last test
        for listener in USERS.listeners:
            listener()


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    return packaged_model_dir()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """tiny_models(kind) -> directory of a tiny random checkpoint for that task, built once per session."""
    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = build_tiny_model(kind, root / kind)
        return built[kind]

    get.kind_of = lambda model_dir: next((k for k, d in built.items() if d == model_dir), None)
    return get


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    """One ONNX export cache per session (its keys are content hashes, and it is locked): each checkpoint is
    exported once for test_onnx_engine, test_onnx_server and test_triton_onnx."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def start_huggingface_runtime(tmp_path_factory, tiny_models, minilm_dir):
    """start(model_dir, model_name, *args): the kserve-huggingface runtime on loopback, ready.

    One process per checkpoint and arguments, whatever name a module asks for (the first one serves; tests read
    `.model_name`); it stops once the last module that uses it (tests/servers.py: ServerUsers) has finished."""

    def checkpoint_of(model_dir: Path) -> str:
        return "minilm" if model_dir == Path(minilm_dir) else tiny_models.kind_of(model_dir) or str(model_dir)

    shared = SharedRuntime1(ServerStarter(tmp_path_factory.mktemp("server-logs")), checkpoint_of)
    USERS.listeners.append(shared.stop_unneeded)
    yield shared.start
    USERS.listeners.remove(shared.stop_unneeded)
    shared.stop_all()


@pytest.fixture(scope="session")
def shared_stacks(minilm_dir, tiny_models, tmp_path_factory):
    """The session's Triton stacks (tests/servers.py), each started on first use and stopped after its last
    declared user."""
    stacks = SharedStacks({
        MINILM_TRITON: lambda: MiniLMTritonStack(minilm_dir, tmp_path_factory.mktemp("minilm-triton")),
        TINY_TRITON: lambda: TinyTriton({kind: tiny_models(kind) for kind in TinyTriton.KINDS},
                                        tmp_path_factory.mktemp("tiny-triton")),
    })
    USERS.listeners.append(stacks.stop_unneeded)
    yield stacks
    USERS.listeners.remove(stacks.stop_unneeded)
    stacks.stop_all()


def _minilm_triton(shared_stacks) -> MiniLMTritonStack:
    return shared_stacks.get(MINILM_TRITON)


def _tiny_triton(shared_stacks) -> TinyTriton:
    return shared_stacks.get(TINY_TRITON)


_minilm_triton.shared_key, _tiny_triton.shared_key = MINILM_TRITON, TINY_TRITON
# For tests that neither stop nor reconfigure them (those start stacks of their own).
minilm_triton = pytest.fixture(scope="module", name="minilm_triton")(_minilm_triton)
tiny_triton = pytest.fixture(scope="module", name="tiny_triton")(_tiny_triton)


@pytest.fixture
def inference_client(monkeypatch):
    """inference_client(url) -> huggingface_hub.InferenceClient(base_url=url), exactly as a user builds it.

    The tests run with HF_HUB_OFFLINE=1, and huggingface_hub then refuses every request, loopback included; the
    guard is lifted for this test only. A client given a URL sends requests to that URL and nowhere else.
    """
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return lambda url: InferenceClient(base_url=url, timeout=120)
