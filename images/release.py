"""Release checks and chart publishing (make release-check, release-chart, release-dry-run).

    python images/release.py check [--tag vX.Y.Z] [--engine podman]   # versions agree (and the built images)
    python images/release.py package --out build/release               # helm package
    python images/release.py push --out build/release                  # helm push oci://... (registry login from env)

One version names a release: the git tag is `v<version>`, and Chart.yaml's `version` and `appVersion`,
pyproject.toml's version and every image the rendered chart references (`<registry>/<repo>:<appVersion>`)
carry it. `check` fails on any disagreement; with `--engine` it also reads the
`org.opencontainers.image.version` label of each image as built locally. In GitHub Actions it writes
the version and the three image references to $GITHUB_OUTPUT, so the workflow pushes exactly the
images the chart will pull. Helm is Helm's own Go SDK (helm-python-sdk, requirements/dev.txt).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conformance.chart import CHART_DIR, render_chart  # noqa: E402

CHART_OCI = os.environ.get("CHART_OCI", "oci://ghcr.io/hfserve/charts")
# output name -> (ClusterServingRuntime, container)
IMAGES = {
    "huggingface": ("kserve-huggingface", "kserve-container"),
    "transformer": ("kserve-huggingface-triton", "transformer-container"),
    "triton": ("kserve-huggingface-triton", "kserve-container"),
}
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


def chart_meta(chart: Path = CHART_DIR) -> dict:
    return yaml.safe_load((chart / "Chart.yaml").read_text())


def chart_images(chart: Path = CHART_DIR) -> dict[str, str]:
    """The image each runtime container pulls, as the chart renders it with default values."""
    objects = render_chart(chart_dir=chart)
    runtimes = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "ClusterServingRuntime"}
    out = {}
    for key, (runtime, container) in IMAGES.items():
        spec = next(c for c in runtimes[runtime]["spec"]["containers"] if c["name"] == container)
        out[key] = spec["image"]
    return out


def problems(tag: str | None, engine: str | None, chart: Path = CHART_DIR) -> tuple[str, dict[str, str], list[str]]:
    meta = chart_meta(chart)
    version, app_version = str(meta["version"]), str(meta["appVersion"])
    errors = []
    if not SEMVER.match(version):
        errors.append(f"Chart.yaml version {version!r} is not semantic versioning")
    if version != app_version:
        errors.append(f"Chart.yaml version {version} != appVersion {app_version} (one version per release)")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    if pyproject != app_version:
        errors.append(f"pyproject.toml version {pyproject} != Chart.yaml appVersion {app_version}")
    if tag is not None and tag != f"v{version}":
        errors.append(f"git tag {tag!r} != v{version} (Chart.yaml version)")
    images = chart_images(chart)
    for key, ref in images.items():
        if "@" in ref or not ref.endswith(f":{app_version}"):
            errors.append(f"the chart's {key} image {ref} is not tagged with appVersion {app_version}")
    if engine:
        for key, ref in images.items():
            proc = subprocess.run([engine, "image", "inspect", "--format",
                                   '{{index .Config.Labels "org.opencontainers.image.version"}}', ref],
                                  capture_output=True, text=True, timeout=60)
            label = proc.stdout.strip()
            if proc.returncode != 0:
                errors.append(f"{ref} is not built ({engine}: {proc.stderr.strip()[:200]})")
            elif label != app_version:
                errors.append(f"{ref} has org.opencontainers.image.version={label!r}, not {app_version}")
    return app_version, images, errors


def cmd_check(args: argparse.Namespace) -> int:
    version, images, errors = problems(args.tag or None, args.engine or None, Path(args.chart))
    for e in errors:
        print(f"release check: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"release {version}: chart {chart_meta(Path(args.chart))['name']}-{version}, images {', '.join(images.values())}")
    if out := os.environ.get("GITHUB_OUTPUT"):
        with open(out, "a") as f:
            f.write(f"version={version}\n")
            for key, ref in images.items():
                f.write(f"{key}={ref}\n")
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from helm_python.chart import lint, package

    result = lint(str(CHART_DIR), strict=True)
    findings = result.get("errors") or [m for m in result.get("messages") or [] if m.get("severity", 0) >= 2]
    if findings:
        print(f"helm lint --strict: {findings}", file=sys.stderr)
        return 1
    Path(args.out).mkdir(parents=True, exist_ok=True)
    archive = package(str(CHART_DIR), destination=args.out)
    meta = chart_meta()
    expected = Path(args.out) / f"{meta['name']}-{meta['version']}.tgz"
    if Path(archive).resolve() != expected.resolve():
        print(f"helm package wrote {archive}, expected {expected}", file=sys.stderr)
        return 1
    print(f"packaged {archive}; `helm push` target: {CHART_OCI}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from helm_python.registry import RegistryClient, push

    meta = chart_meta()
    archive = Path(args.out) / f"{meta['name']}-{meta['version']}.tgz"
    host = CHART_OCI.removeprefix("oci://").split("/")[0]
    client = RegistryClient()
    client.login(host, username=os.environ["REGISTRY_USER"], password=os.environ["REGISTRY_PASSWORD"])
    result = push(str(archive), CHART_OCI, client=client)
    print(f"pushed {archive.name} to {CHART_OCI}: {result}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="tag, Chart.yaml, pyproject and image references agree")
    check.add_argument("--tag", default="", help="the git tag (vX.Y.Z); empty: not checked")
    check.add_argument("--engine", default="", help="docker | podman: also check the locally built images' labels")
    check.add_argument("--chart", default=str(CHART_DIR), help="the chart directory")
    check.set_defaults(func=cmd_check)
    for name, func in (("package", cmd_package), ("push", cmd_push)):
        p = sub.add_parser(name)
        p.add_argument("--out", default=str(REPO / "build" / "release"))
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
