"""The images as podman pods (--target pods, `make pod-test`): every container runs under the
security context, limits and volumes the chart declares, and a killed Triton container comes back
by itself (restart policy Always) while the transformer answers 503 and stays live.

What each check compares with is read from the assembled pod (`PodmanPod.manifest`), so a chart
change moves the expectation with it.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from conformance import protocol as P
from conformance.pods.base import MODEL_MOUNT
from conformance.pods.podman import PodmanPod, _bytes

pytestmark = pytest.mark.pods

# Run inside a container: facts about its main process (PID 1) and its file systems.
_FACTS = r"""
import json, os
status = dict(line.split(':', 1) for line in open('/proc/1/status').read().splitlines() if ':' in line)
def writable(path):
    try:
        with open(os.path.join(path, '.hfserve-write-check'), 'w') as f:
            f.write('x')
        os.remove(os.path.join(path, '.hfserve-write-check'))
        return True
    except OSError:
        return False
def memory_limit():
    for path in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):
        if os.path.exists(path):
            value = open(path).read().strip()
            return None if value == 'max' else int(value)
mounts = {}
for line in open('/proc/self/mounts'):
    dev, point, fstype, opts = line.split()[:4]
    mounts[point] = {'fstype': fstype, 'ro': 'ro' in opts.split(',')}
shm = os.statvfs('/dev/shm')
print(json.dumps({
    'uid': [int(x) for x in status['Uid'].split()], 'gid': [int(x) for x in status['Gid'].split()],
    'cap_eff': int(status['CapEff'], 16), 'cap_bnd': int(status['CapBnd'], 16),
    'no_new_privs': int(status['NoNewPrivs']), 'seccomp': int(status['Seccomp']),
    'root_writable': writable('/'), 'etc_writable': writable('/etc'),
    'tmp_writable': writable('/tmp'), 'models_writable': writable('/mnt/models') if os.path.isdir('/mnt/models') else None,
    'memory_limit': memory_limit(), 'mounts': mounts, 'shm_bytes': shm.f_blocks * shm.f_frsize,
}))
"""


def _facts(pod, container: str) -> dict:
    proc = pod.exec(container, "python", "-c", _FACTS)
    assert proc.returncode == 0, f"{container}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def _pods(dep):
    pod = dep.control
    assert isinstance(pod, PodmanPod), f"not a podman pod: {type(pod).__name__}"
    return pod


@pytest.fixture(params=["huggingface", "triton"])
def pod_dep(request, minilm, triton_minilm):
    return minilm if request.param == "huggingface" else triton_minilm


def test_containers_run_under_the_charts_security_context(pod_dep):
    pod = _pods(pod_dep)
    for spec in pod.manifest["spec"]["containers"]:
        name = spec["name"]
        sc = spec.get("securityContext") or {}
        facts = _facts(pod, name)
        uid = facts["uid"][0]
        assert all(u == uid for u in facts["uid"]), f"{name}: uids differ {facts['uid']}"
        if sc.get("runAsUser") is not None:
            assert uid == sc["runAsUser"], f"{name}: runs as uid {uid}, chart says {sc['runAsUser']}"
        if sc.get("runAsNonRoot"):
            assert uid != 0 and facts["gid"][0] != 0, f"{name}: runs as root ({facts['uid']}, {facts['gid']})"
        if sc.get("readOnlyRootFilesystem"):
            assert not facts["root_writable"] and not facts["etc_writable"], f"{name}: root file system is writable"
        if "ALL" in ((sc.get("capabilities") or {}).get("drop") or []) and not (sc.get("capabilities") or {}).get("add"):
            assert facts["cap_eff"] == 0 and facts["cap_bnd"] == 0, f"{name}: capabilities left {facts}"
        if sc.get("allowPrivilegeEscalation") is False:
            assert facts["no_new_privs"] == 1, f"{name}: no_new_privs is not set"
        if (sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault":
            assert facts["seccomp"] == 2, f"{name}: seccomp mode {facts['seccomp']} (2 = filter)"


def test_limits_and_volumes_are_the_charts(pod_dep):
    pod = _pods(pod_dep)
    volumes = {v["name"]: v for v in pod.manifest["spec"]["volumes"]}
    for spec in pod.manifest["spec"]["containers"]:
        name = spec["name"]
        facts = _facts(pod, name)
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            assert facts["memory_limit"] == _bytes(limit), f"{name}: memory limit {facts['memory_limit']} != {limit}"
        for vm in spec.get("volumeMounts") or []:
            path = vm["mountPath"]
            assert path in facts["mounts"], f"{name}: {path} is not mounted"
            mount = facts["mounts"][path]
            assert mount["ro"] == bool(vm.get("readOnly")), f"{name}: {path} read-only={mount['ro']}, chart says {vm}"
            empty_dir = (volumes[vm["name"]].get("emptyDir") or {})
            if empty_dir.get("medium") == "Memory":
                assert mount["fstype"] == "tmpfs", f"{name}: {path} is {mount['fstype']}, not memory-backed"
                if path == "/dev/shm" and empty_dir.get("sizeLimit"):
                    assert facts["shm_bytes"] == _bytes(empty_dir["sizeLimit"]), f"{name}: /dev/shm {facts['shm_bytes']} bytes"
        if any(vm["mountPath"] == MODEL_MOUNT for vm in spec.get("volumeMounts") or []):
            assert facts["models_writable"] is False, f"{name}: {MODEL_MOUNT} is writable"
        if any(vm["mountPath"] == "/tmp" for vm in spec.get("volumeMounts") or []):
            assert facts["tmp_writable"], f"{name}: the /tmp emptyDir is not writable for uid {facts['uid'][0]}"


def test_pod_restart_policy_is_always(pod_dep):
    pod = _pods(pod_dep)
    assert pod.manifest["spec"]["restartPolicy"] == "Always"
    for name in pod.containers:
        policy = pod.inspect(name)["HostConfig"]["RestartPolicy"]["Name"]
        assert policy == "always", f"{name}: podman restart policy {policy}"


@pytest.mark.degradation
def test_killed_triton_container_comes_back_by_itself(triton_minilm, recovery_timeout):
    """SIGKILL to the Triton container's process (as a crash would): the transformer answers 503
    within a second and stays live, and podman restarts the container (no action of the test)
    until the pod serves again."""
    dep = triton_minilm
    pod = _pods(dep)
    triton, transformer = dep.control.triton_container, dep.control.serving_container
    before = {n: pod.restart_count(n) for n in (triton, transformer)}
    pod.kill(triton)
    with dep.http(timeout=httpx.Timeout(5.0, connect=2.0)) as http:
        deadline = time.monotonic() + 10
        while True:
            t0 = time.monotonic()
            r = P.v1_predict(http, dep.model_name, ["is Triton there?"])
            took = time.monotonic() - t0
            if r.status_code == 503:
                P.assert_json_error(r, 503, 503)
                assert took <= 1.0, f"503 after {took:.2f}s"
                break
            assert time.monotonic() < deadline, f"still {r.status_code} 10 s after killing {triton}"
            time.sleep(0.05)
        assert http.get("/v2/health/live").status_code == 200
    deadline = time.monotonic() + recovery_timeout
    with dep.http(timeout=10) as http:
        while True:
            try:
                r = P.v1_predict(http, dep.model_name, ["back again"])
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no recovery within {recovery_timeout:.0f}s"
            time.sleep(0.5)
        P.assert_embeddings(P.v1_embeddings(r), 1, dep.embedding_dim)
    assert pod.restart_count(triton) == before[triton] + 1, "podman did not restart the Triton container"
    assert pod.restart_count(transformer) == before[transformer], "the transformer container restarted too"
