"""Start released (or locally built) images the way a cluster runs them and check that each serves.

`make image-smoke` (the release and nightly workflows call it):
    python -m devkit.image_smoke [--huggingface REF ...] [--transformer REF --triton REF] [--pull]

Each `--huggingface` image runs the kserve-huggingface runtime; a `--transformer`/`--triton` pair runs the
kserve-huggingface-triton runtime. The pod is the chart's, as KServe would assemble it (`conformance.chart`),
run by podman (`conformance.pods.podman.PodmanPod`: the chart's security context, read-only root, memory
limits) with the packaged all-MiniLM-L6-v2 mounted read-only at /mnt/models. Each pod must become ready
within --ready_timeout_s and answer KServe V1 `GET /v1/models/minilm` with `"ready": true` and
`POST /v1/models/minilm:predict` with one 384-float embedding per instance. Exit status 1 names every image
that failed and why. Needs rootful podman (`make ci-tools`); `--pull` pulls the images first (a registry
login, when one is needed, comes from REGISTRY_USER/REGISTRY_PASSWORD).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import httpx

MODEL = "minilm"
EMBEDDING_SIZE = 384  # all-MiniLM-L6-v2


def image_values(ref: str) -> dict[str, str]:
    """A chart `image` block ({registry, repository, tag|digest}) for an image reference."""
    name, _, digest = ref.partition("@")
    registry, _, rest = name.partition("/")
    if not rest or ("." not in registry and ":" not in registry and registry != "localhost"):
        raise ValueError(f"{ref}: name the registry (e.g. ghcr.io/...)")
    repository, tag = rest, ""
    if ":" in rest.rsplit("/", 1)[-1]:
        repository, _, tag = rest.rpartition(":")
    if not repository or not (tag or digest):
        raise ValueError(f"{ref}: expected REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:...")
    return {"registry": registry, "repository": repository, "tag": tag, "digest": digest}


def pods_to_run(huggingface: list[str], transformer: str | None, triton: str | None) -> list[tuple[str, str, dict]]:
    """(label, runtime, chart values) of every pod to start."""
    if bool(transformer) != bool(triton):
        raise ValueError("--transformer and --triton go together (one pod)")
    out = [(ref, "kserve-huggingface", {"huggingface": {"image": image_values(ref)}}) for ref in huggingface]
    if transformer and triton:
        out.append((f"{transformer} + {triton}", "kserve-huggingface-triton",
                    {"triton": {"transformer": {"image": image_values(transformer)},
                                "server": {"image": image_values(triton)}}}))
    return out


def check_serves(url: str) -> None:
    """V1 ready + predict, as the release promises."""
    ready = httpx.get(f"{url}/v1/models/{MODEL}", timeout=30)
    if ready.status_code != 200 or ready.json().get("ready") is not True:
        raise AssertionError(f"GET /v1/models/{MODEL}: {ready.status_code} {ready.text[:300]}")
    texts = ["KServe serves models", "a second sentence"]
    r = httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": texts}, timeout=120)
    if r.status_code != 200:
        raise AssertionError(f"POST :predict: {r.status_code} {r.text[:300]}")
    predictions = r.json().get("predictions")
    if not (isinstance(predictions, list) and len(predictions) == len(texts)
            and all(isinstance(p, list) and len(p) == EMBEDDING_SIZE for p in predictions)):
        raise AssertionError(f"POST :predict: expected {len(texts)} embeddings of {EMBEDDING_SIZE}: {r.text[:300]}")


def _pull(ref: str) -> None:
    from conformance.pods.podman import podman

    podman("pull", ref, timeout=1800)


def _login(registries: set[str]) -> None:
    user, password = os.environ.get("REGISTRY_USER"), os.environ.get("REGISTRY_PASSWORD")
    if not (user and password):
        return
    from conformance.pods.podman import PODMAN, podman_env

    for registry in sorted(registries):
        subprocess.run([PODMAN, "login", "--username", user, "--password-stdin", registry], input=password,
                       text=True, check=True, env=podman_env(), capture_output=True, timeout=120)


def run(pods: list[tuple[str, str, dict[str, Any]]], pull: bool, ready_timeout_s: float) -> list[str]:
    from hfserve.packaged_model import packaged_model_dir

    from conformance.pods.podman import PodmanPod

    failures = []
    if pull:
        refs = {image["registry"] + "/" + image["repository"] for _, _, values in pods
                for image in _images(values)}
        _login({ref.split("/", 1)[0] for ref in refs})
    for label, runtime, values in pods:
        try:
            if pull:
                for image in _images(values):
                    _pull(_ref(image))
            with PodmanPod.start(runtime, model_dir=packaged_model_dir(), model_name=MODEL, values=values) as pod:
                pod.wait_ready(ready_timeout_s)
                check_serves(pod.http_url)
            print(f"image-smoke: {label}: ready, V1 predict answered")
        except Exception as exc:  # every image is tried; each failure is reported with its reason
            failures.append(f"{label} ({runtime}): {type(exc).__name__}: {str(exc)[-2000:]}")
    return failures


def _images(values: dict[str, Any]) -> list[dict[str, str]]:
    if "huggingface" in values:
        return [values["huggingface"]["image"]]
    return [values["triton"]["transformer"]["image"], values["triton"]["server"]["image"]]


def _ref(image: dict[str, str]) -> str:
    base = f"{image['registry']}/{image['repository']}"
    return f"{base}@{image['digest']}" if image["digest"] else f"{base}:{image['tag']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--huggingface", action="append", default=[], help="a kserve-huggingface image (repeatable)")
    parser.add_argument("--transformer", help="the transformer image of the Triton pod")
    parser.add_argument("--triton", help="the Triton image of the Triton pod")
    parser.add_argument("--pull", action="store_true", help="pull every image first")
    parser.add_argument("--ready_timeout_s", type=float, default=900.0)
    args = parser.parse_args(argv)
    try:
        pods = pods_to_run([h for h in args.huggingface if h], args.transformer or None, args.triton or None)
    except ValueError as exc:
        parser.error(str(exc))
    if not pods:
        parser.error("no image given")
    failures = run(pods, args.pull, args.ready_timeout_s)
    for failure in failures:
        print(f"image-smoke: FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
