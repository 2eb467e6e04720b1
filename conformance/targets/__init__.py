"""What the conformance suite runs against (--target, see conftest.py): four kinds of target.

local    (local.py) Both runtimes started from the rendered chart as processes on loopback ports
         (conformance.pods.process), serving the packaged all-MiniLM-L6-v2 and tiny locally built models.
pods     (local.py) The MiniLM deployments as podman pods of the built images (conformance.pods.podman).
URL      (url.py) One or more existing endpoints ("http://host:port[,http://host2:port]"); no process
         control, so the tests that kill containers are skipped for them.
cluster  (cluster.py) KUBECONFIG is set: the chart is installed with helm, the example InferenceServices are
         applied, and each predictor pod is reached through `kubectl port-forward`.

A `Deployment` (deployment.py) is one serving endpoint for one model; its `control` (None for URL targets)
kills, restarts and waits for containers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conformance.targets.deployment import Target


def make_target(config) -> Target:
    """The target named by --target, with the options that configure it."""
    name = config.getoption("--target")
    if name == "local":
        from conformance.targets.local import LocalTarget

        return LocalTarget()
    if name == "pods":
        from conformance.targets.local import PodsTarget

        return PodsTarget()
    if name == "cluster":
        from conformance.targets.cluster import ClusterTarget

        chart = Path(config.getoption("--chart"))
        examples = config.getoption("--examples") or str(chart / "examples" / "*-cpu.yaml")
        return ClusterTarget(name, config.getoption("--namespace"), chart, [e for e in examples.split(",") if e],
                             keep=config.getoption("--keep-cluster"))
    from conformance.targets.url import UrlTarget, url_deployments

    split = lambda opt: [v for v in config.getoption(opt).split(",") if v]  # noqa: E731
    deployments = url_deployments(split("--target"), split("--model-name"), split("--runtime"),
                                  split("--grpc-target"), split("--triton-url"),
                                  config.getoption("--embedding-dim") or None)
    return UrlTarget(name, deployments)


def have_gpu() -> tuple[bool, str]:
    if shutil.which("nvidia-smi") is None:
        return False, "no GPU on this machine (nvidia-smi not found)"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no GPU visible to torch (torch.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001
        return False, f"torch cannot probe CUDA: {exc}"
    return True, ""
