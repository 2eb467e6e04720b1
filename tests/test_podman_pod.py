"""conformance/pods/podman.py without podman: how a Pod's fields become podman settings, and the
podman configuration for this machine. The pods themselves run in `make pod-test`."""

from __future__ import annotations

import re
import resource
import subprocess

import pytest

from conformance.pods.base import MODEL_MOUNT, PodError
from conformance.pods.podman import REPO, PodmanPod, _bytes, _cpus


@pytest.mark.parametrize("runtime", ["kserve-huggingface", "kserve-huggingface-triton"])
def test_assembled_pod_mounts_the_model_read_only_and_restarts_always(runtime):
    pod = PodmanPod.manifest_for(runtime, "minilm")
    assert pod["spec"]["restartPolicy"] == "Always"
    serving = [c for c in pod["spec"]["containers"] if c["name"] in ("kserve-container", "transformer-container")]
    assert serving
    for c in serving:
        mounts = [m for m in c["volumeMounts"] if m["mountPath"] == MODEL_MOUNT]
        assert len(mounts) == 1 and mounts[0]["readOnly"] is True, c["name"]
        assert not any("{{.Name}}" in a for a in c.get("args") or []), c["args"]
        assert "--model_name=minilm" in c["args"]


def test_security_context_becomes_podman_flags():
    sc = {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
          "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}, "allowPrivilegeEscalation": False,
          "seccompProfile": {"type": "RuntimeDefault"}}
    flags = PodmanPod._security_flags("c", "img", sc)
    joined = " ".join(flags)
    assert "--user 1000:1000" in joined
    # no tmpfs that the pod does not declare (podman adds /tmp, /run, /var/tmp by default)
    assert "--read-only --read-only-tmpfs=false" in joined
    assert "--cap-drop ALL" in joined and "--cap-add NET_BIND_SERVICE" in joined
    assert "--security-opt no-new-privileges" in joined
    assert "seccomp=unconfined" not in joined  # RuntimeDefault: podman's default profile
    # Without a profile the kubelet runs unconfined.
    assert "seccomp=unconfined" in " ".join(PodmanPod._security_flags("c", "img", {"runAsUser": 5}))


def test_run_as_non_root_refuses_uid_0():
    with pytest.raises(PodError, match="uid 0"):
        PodmanPod._security_flags("c", "img", {"runAsNonRoot": True, "runAsUser": 0})
    with pytest.raises(PodError, match="Localhost"):
        PodmanPod._security_flags("c", "img", {"runAsUser": 1, "seccompProfile": {"type": "Localhost"}})


def test_kubernetes_quantities():
    assert _bytes("4Gi") == 4 * 2**30 and _bytes("256Mi") == 256 * 2**20 and _bytes("1G") == 10**9
    assert _bytes(1000) == 1000
    assert _cpus("500m") == "0.5" and _cpus("2") == "2"


def test_containers_conf_stays_within_this_machines_hard_limits():
    out = subprocess.run([str(REPO / "images" / "podman" / "containers-conf.sh")], capture_output=True, text=True,
                         check=True).stdout
    limits = dict(re.findall(r'"(nofile|nproc)=(\d+):\d+"', out))
    assert set(limits) == {"nofile", "nproc"}, out
    for name, rlimit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(rlimit)[1]
        assert hard == resource.RLIM_INFINITY or int(limits[name]) <= hard, (name, limits[name], hard)
