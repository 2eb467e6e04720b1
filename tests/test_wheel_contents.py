"""The runtime wheel holds only what runs in a pod: the hfserve package, built offline from the files the
images copy (pyproject.toml, README.md, serving_code/), with no dev tooling and no import of it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Packages beside serving_code/ that never ship: dev tooling, test harnesses, benchmarks.
DEV_ONLY = {"devkit", "conformance", "loadtests", "tests", "charts", "images"}
# What moved out of the runtime package into devkit/ (issue 17): it must not come back.
MOVED_OUT = {"hfserve/devtools", "hfserve/triton/dev_serve.py", "hfserve/triton/triton_pair.py"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "serving_code", src / "serving_code",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("hfserve-*.whl")
    with zipfile.ZipFile(path) as zf:
        yield zf


def _top_levels(names: list[str]) -> set[str]:
    return {n.split("/", 1)[0] for n in names}


def test_the_wheel_holds_the_hfserve_package_and_its_metadata_only(wheel):
    names = wheel.namelist()
    tops = _top_levels(names)
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert len(dist_info) == 1 and tops - dist_info == {"hfserve"}, sorted(tops)
    assert not tops & DEV_ONLY
    for moved in MOVED_OUT:
        assert not [n for n in names if n == moved or n.startswith(moved + "/")], f"{moved} is back in the runtime wheel"
    for name in names:
        assert not name.endswith((".pyc", ".orig", ".rej")) and "__pycache__" not in name, name
        assert "/tests/" not in name and not Path(name).name.startswith(("test_", "conftest")), name


def test_every_runtime_module_is_in_the_wheel(wheel):
    shipped = {n for n in wheel.namelist() if n.endswith(".py")}
    source = {p.relative_to(REPO / "serving_code").as_posix() for p in (REPO / "serving_code" / "hfserve").rglob("*.py")}
    assert source == shipped
    for entry in ("hfserve/huggingface/__main__.py", "hfserve/transformer/__main__.py", "hfserve/triton/__main__.py"):
        assert entry in shipped


def test_no_runtime_module_imports_dev_tooling(wheel):
    offenders = []
    for name in (n for n in wheel.namelist() if n.endswith(".py")):
        tree = ast.parse(wheel.read(name).decode(), filename=name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            offenders += [f"{name}:{node.lineno} imports {r}" for r in roots & DEV_ONLY]
    assert offenders == []


def test_the_console_scripts_start_the_three_runtimes(wheel):
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    for runtime in ("huggingface", "transformer", "triton"):
        assert f"hfserve-{runtime} = hfserve.{runtime}.__main__:main" in text
