"""Run a ClusterServingRuntime of the Helm chart as a podman pod, from the images `make images` built.

    from conformance.pods.podman import PodmanPod
    with PodmanPod.start("kserve-huggingface-triton", model_dir=DIR, model_name="minilm") as pod:
        pod.wait_ready(600)
        httpx.post(f"{pod.http_url}/v1/models/minilm:predict", json={"instances": ["hi"]})

The pod is the one KServe would create for an InferenceService of the runtime (`conformance.chart.build_pod`),
and podman runs it the way a kubelet would (restart policy Always, as KServe's Deployments and Knative's pods):

* one podman pod: the containers share the network, IPC and UTS namespaces; the serving
  container's ports are published on 127.0.0.1 (free host ports, like a Service in front of the
  pod IP); ports bound to the pod's loopback only (Triton's) are reached through a port-forward
  into the pod's network namespace, like `kubectl port-forward`;
* per container: the image, command, args, env, working dir; `securityContext` (runAsUser/Group,
  runAsNonRoot checked against the image's USER as the kubelet does, readOnlyRootFilesystem with no
  extra tmpfs, capabilities drop/add, allowPrivilegeEscalation, seccomp RuntimeDefault or
  unconfined); `resources.limits` memory and cpu; restart policy Always;
* volumes: each emptyDir is one host directory (mode 0777, as the kubelet creates them) shared by
  the containers that mount it; `medium: Memory` is a tmpfs of its `sizeLimit` (so /dev/shm is
  memory-backed and bounded); the model volume /mnt/models is the local model directory,
  read-only, standing in for what KServe's storage initializer downloads;
* probes: readiness (`wait_ready`) and liveness (a thread that kills a container after
  `failureThreshold` failed checks, like the kubelet; restart policy Always brings it back);
* `kill` signals a container's main process from the host, as a crash would: podman then applies
  the restart policy (it does not after `podman kill`, which it counts as a stop by the user).

Needs podman, rootful (the port-forward enters the pod's network namespace with setns(2)). podman's
settings for this machine come from CONTAINERS_CONF (`make pod-test` generates one with
images/podman/containers-conf.sh; this module generates one when it is unset).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.chart import REPO, build_pod
from conformance.kserve_model.pod_assembly import MODEL_VOLUME
from conformance.pods.base import LEFTOVERS, NOT_RUN, Container, Pod, PodError, argv_int, serving_container_of
from devkit.ports import reserve_ports

PODMAN = os.environ.get("PODMAN", "podman")

# ------------------------------------------------------------------------------------------
# podman


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=podman_env())
    if check and proc.returncode != 0:
        raise PodError(f"podman {' '.join(args[:3])} ... -> {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


_CONF_LOCK = threading.Lock()


def podman_env() -> dict[str, str]:
    """The environment of podman calls: CONTAINERS_CONF for this machine unless one is set."""
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF"):
        with _CONF_LOCK:
            conf = Path(tempfile.gettempdir()) / f"hfserve-containers-{os.getuid()}.conf"
            if not conf.exists():
                text = subprocess.run([str(REPO / "images" / "podman" / "containers-conf.sh")], capture_output=True,
                                      text=True, check=True).stdout
                tmp = conf.with_suffix(f".{os.getpid()}")
                tmp.write_text(text)
                os.replace(tmp, conf)
            os.environ["CONTAINERS_CONF"] = str(conf)
            env["CONTAINERS_CONF"] = str(conf)
    return env


def check_podman() -> None:
    """Raise PodError saying why podman cannot run pods here (not installed, not root, no images)."""
    if shutil.which(PODMAN) is None:
        raise PodError("podman is not installed: .ci/install-container-tools.sh installs it (Debian's podman, runc)")
    if os.geteuid() != 0:
        raise PodError("the podman pods run rootful (the port-forward enters the pod's network namespace): run as root")
    podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)


def _bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (4Gi, 512Mi, 1G, 1000) in bytes."""
    q = str(quantity)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix in sorted(units, key=len, reverse=True):
        if q.endswith(suffix):
            return int(float(q[: -len(suffix)]) * units[suffix])
    return int(float(q))


def _cpus(quantity: str | int) -> str:
    q = str(quantity)
    return str(int(q[:-1]) / 1000) if q.endswith("m") else q


# ------------------------------------------------------------------------------------------
# port-forward into the pod's network namespace (like `kubectl port-forward`)

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsForward:
    """127.0.0.1:<free port> on the host -> 127.0.0.1:`port` inside the network namespace `netns_path`."""

    def __init__(self, netns_path: str, port: int):
        self.port = port
        self.netns_fd = os.open(netns_path, os.O_RDONLY)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.local_port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"forward-{port}").start()

    def _connect_inside(self) -> socket.socket:
        # A socket belongs to the network namespace of the thread that creates it: create it in a
        # short-lived thread that has entered the pod's namespace.
        result: dict[str, Any] = {}

        def inside() -> None:
            try:
                if _libc.setns(self.netns_fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns into the pod's network namespace failed")
                result["sock"] = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError as exc:
                result["error"] = exc

        t = threading.Thread(target=inside, daemon=True)
        t.start()
        t.join()
        if "error" in result:
            raise result["error"]
        sock = result["sock"]
        sock.settimeout(None)
        return sock

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = self._connect_inside()
        except OSError:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()  # a reset, as a refused connection would give
            return
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                src.shutdown(socket.SHUT_RD)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self.netns_fd)


# ------------------------------------------------------------------------------------------
# the pod


@dataclass
class PodmanContainer(Container):
    podman_name: str = ""   # the podman container name
    liveness: threading.Thread | None = field(default=None, repr=False)


def _remove_pod(name: str) -> None:
    podman("pod", "rm", "--force", "--time", "0", name, check=False, timeout=120)


class PodmanPod(Pod):
    """One ClusterServingRuntime of the chart running as a podman pod. Use `PodmanPod.start`."""

    restarts_by_itself = True  # restartPolicy Always: podman restarts an exited container
    ready_timeout = 600.0
    probe_interval_s = 0.5
    containers: dict[str, PodmanContainer]

    def __init__(self, runtime: str, manifest: dict[str, Any], model_dir: str, work_dir: Path, keep_work_dir: bool):
        super().__init__(runtime, manifest)
        self.model_dir = str(Path(model_dir).resolve())
        self.work_dir = work_dir
        self.keep_work_dir = keep_work_dir
        self.name = f"hfserve-{runtime.removeprefix('kserve-')}-{uuid.uuid4().hex[:8]}"
        self.published: dict[int, int] = {}      # pod port -> host port (serving container)
        self.forwards: dict[int, NetnsForward] = {}  # pod loopback port -> forward
        self.tmpfs_volumes: list[str] = []
        self._stop_probes = threading.Event()
        self._cleanup: int | None = None

    # -- construction -------------------------------------------------------------------

    @staticmethod
    def manifest_for(runtime: str, model_name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """The core/v1 Pod KServe creates for an InferenceService of `runtime` serving `model_name`, with
        restartPolicy Always (KServe's Deployment and Knative's pods restart always). Init containers (the
        storage initializer) are not run: the model directory stands for what it would download."""
        manifest = build_pod(runtime, model_name, values)
        manifest["spec"].setdefault("restartPolicy", "Always")
        return manifest

    @classmethod
    def start(cls, runtime: str, model_dir: str | os.PathLike, model_name: str,
              values: dict[str, Any] | None = None, extra_args: dict[str, list[str]] | None = None,
              work_dir: str | os.PathLike | None = None, keep_work_dir: bool = False) -> PodmanPod:
        """Assemble the pod of `runtime`, create it with podman and start it. Call `wait_ready`."""
        check_podman()
        manifest = cls.manifest_for(runtime, model_name, values)
        for c in manifest["spec"]["containers"]:
            c["args"] = list(c.get("args") or []) + list((extra_args or {}).get(c["name"], []))
        root = Path(tempfile.mkdtemp(prefix=f"podman-{runtime}-", dir=work_dir))
        self = cls(runtime, manifest, str(model_dir), root, keep_work_dir)
        name = self.name
        self._cleanup = LEFTOVERS.add(lambda: _remove_pod(name))
        try:
            self._create()
            podman("pod", "start", self.name, timeout=300)
            self._open_forwards()
            self._start_liveness_probes()
        except BaseException:
            self.stop(grace=0)
            raise
        return self

    def _serving_spec(self) -> dict[str, Any]:
        wanted = serving_container_of([c["name"] for c in self.manifest["spec"]["containers"]])
        return next(c for c in self.manifest["spec"]["containers"] if c["name"] == wanted)

    def _create(self) -> None:
        spec = self.manifest["spec"]
        serving = self._serving_spec()
        ports = {int(p["containerPort"]) for p in serving.get("ports") or []}
        for flag in ("--http_port", "--grpc_port"):
            if (port := argv_int(serving.get("args") or [], flag)) is not None:
                ports.add(port)
        self.published = dict(zip(sorted(ports), reserve_ports(len(ports))))
        publish = [a for port, host in self.published.items() for a in ("--publish", f"127.0.0.1:{host}:{port}")]
        podman("pod", "create", "--name", self.name, "--share", "net,ipc,uts", *publish, timeout=120)
        volumes = self._make_volumes(spec.get("volumes") or [])
        for c in spec["containers"]:
            if c["name"] not in NOT_RUN:
                self._create_container(c, volumes, spec.get("securityContext") or {})

    def _make_volumes(self, volumes: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
        """Volume name -> ("bind", host dir) | ("tmpfs", mount options)."""
        out: dict[str, tuple[str, str]] = {}
        for vol in volumes:
            name = vol["name"]
            if name == MODEL_VOLUME:
                out[name] = ("bind", self.model_dir)
            elif "emptyDir" in vol and (vol["emptyDir"] or {}).get("medium") == "Memory":
                # A tmpfs of sizeLimit per mount (podman 4.3 refuses a size on tmpfs volumes);
                # the chart mounts its Memory emptyDir (/dev/shm) into one container only.
                users = [c["name"] for c in self.manifest["spec"]["containers"]
                         if any(vm["name"] == name for vm in c.get("volumeMounts") or [])]
                if len(users) > 1:
                    raise PodError(f"volume {name!r}: a Memory emptyDir shared by {users} cannot run here")
                size = (vol["emptyDir"] or {}).get("sizeLimit")
                out[name] = ("tmpfs", "tmpfs-mode=1777" + (f",tmpfs-size={_bytes(size)}" if size else ""))
            elif "emptyDir" in vol:
                d = self.work_dir / "volumes" / name
                d.mkdir(parents=True)
                d.chmod(0o777)  # the kubelet creates emptyDir directories world-writable
                out[name] = ("bind", str(d))
            else:
                raise PodError(f"volume {name!r}: only emptyDir volumes and the model volume can run here")
        return out

    def _create_container(self, c: dict[str, Any], volumes: dict[str, tuple[str, str]], pod_sc: dict[str, Any]) -> None:
        name = c["name"]
        image = c["image"]
        if podman("image", "exists", image, check=False).returncode != 0:
            raise PodError(f"{name}: image {image} is not built here (make images)")
        args = [str(a) for a in c.get("args") or []]
        cmd = ["create", "--pod", self.name, "--name", f"{self.name}-{name}", "--restart", "always", "--pull", "never",
               "--stop-timeout", str(self.manifest["spec"].get("terminationGracePeriodSeconds", 30))]
        cmd += self._security_flags(name, image, {**pod_sc, **(c.get("securityContext") or {})})
        limits = (c.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            cmd += ["--memory", str(_bytes(limits["memory"]))]
        if "cpu" in limits:
            cmd += ["--cpus", _cpus(limits["cpu"])]
        for item in c.get("env") or []:
            if "value" not in item:
                raise PodError(f"{name}: env {item['name']} uses valueFrom, which needs a cluster")
            cmd += ["--env", f"{item['name']}={item['value']}"]
        for vm in c.get("volumeMounts") or []:
            kind, source = volumes[vm["name"]]
            ro = ",ro" if vm.get("readOnly") else ""
            if kind == "bind":
                cmd += ["--mount", f"type=bind,source={source},destination={vm['mountPath']}{ro}"]
            else:
                cmd += ["--mount", f"type=tmpfs,destination={vm['mountPath']},{source}{ro}"]
        if c.get("workingDir"):
            cmd += ["--workdir", c["workingDir"]]
        command = [str(a) for a in c.get("command") or []]
        if command:
            cmd += ["--entrypoint", json.dumps(command)]
        cmd += [image, *args]
        podman(*cmd)
        self.containers[name] = PodmanContainer(
            name=name, podman_name=f"{self.name}-{name}", spec=c, argv=command + args,
            http_port=argv_int(args, "--http_port"), grpc_port=argv_int(args, "--grpc_port"))

    @staticmethod
    def _security_flags(name: str, image: str, sc: dict[str, Any]) -> list[str]:
        flags: list[str] = []
        user = sc.get("runAsUser")
        group = sc.get("runAsGroup")
        if sc.get("runAsNonRoot"):
            # The kubelet refuses to start a container whose user is root or not numeric
            # (it cannot verify a name): CreateContainerConfigError.
            if user is None:
                image_user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
                uid = image_user.split(":")[0]
                if not uid.isdigit():
                    raise PodError(f"{name}: runAsNonRoot and image {image} has non-numeric user {image_user!r}")
                user = int(uid)
            if int(user) == 0:
                raise PodError(f"{name}: runAsNonRoot and the container would run as uid 0")
        if user is not None:
            flags += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if sc.get("readOnlyRootFilesystem"):
            flags += ["--read-only", "--read-only-tmpfs=false"]  # no tmpfs the pod does not declare
        caps = sc.get("capabilities") or {}
        flags += [a for cap in caps.get("drop") or [] for a in ("--cap-drop", str(cap))]
        flags += [a for cap in caps.get("add") or [] for a in ("--cap-add", str(cap))]
        if sc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            flags += ["--privileged"]
        seccomp = (sc.get("seccompProfile") or {}).get("type", "Unconfined")
        if seccomp == "Unconfined":  # the kubelet's default without a profile
            flags += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":  # RuntimeDefault: podman's default profile
            raise PodError(f"{name}: seccompProfile {seccomp} cannot run here")
        return flags

    def _open_forwards(self) -> None:
        """A port-forward for every --*_port of the non-serving containers (bound to the pod's loopback)."""
        infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", self.name).stdout.strip()
        pid = podman("inspect", "--format", "{{.State.Pid}}", infra).stdout.strip()
        netns = f"/proc/{pid}/ns/net"
        for c in self.containers.values():
            for port in (c.http_port, c.grpc_port):
                if port is not None and port not in self.published and port not in self.forwards:
                    self.forwards[port] = NetnsForward(netns, port)

    # -- probes -------------------------------------------------------------------------

    def address(self, port: int) -> str:
        if port in self.published:
            return f"127.0.0.1:{self.published[port]}"
        if port in self.forwards:
            return f"127.0.0.1:{self.forwards[port].local_port}"
        raise PodError(f"{self.runtime}: pod port {port} is neither published nor forwarded")

    def _start_liveness_probes(self) -> None:
        for c in self.containers.values():
            probe = c.spec.get("livenessProbe") or {}
            url = self.probe_target(c, probe)
            if url:
                c.liveness = threading.Thread(target=self._liveness, args=(c, probe, url), daemon=True,
                                              name=f"liveness-{c.podman_name}")
                c.liveness.start()

    def _liveness(self, c: Container, probe: dict[str, Any], url: str) -> None:
        """The kubelet's liveness probe: `failureThreshold` failures in a row kill the container;
        a (re)started container gets `initialDelaySeconds` before its first check."""
        period = float(probe.get("periodSeconds", 10))
        threshold = int(probe.get("failureThreshold", 3))
        timeout = float(probe.get("timeoutSeconds", 1))
        delay = float(probe.get("initialDelaySeconds", 0))
        started, failures = None, 0
        while not self._stop_probes.wait(period):
            try:
                pid = self.pid(c.name)
            except PodError:
                continue
            if pid <= 0:  # between an exit and the restart
                started, failures = None, 0
                continue
            if pid != started:  # a new start: wait its initial delay
                started, failures = pid, 0
                if self._stop_probes.wait(delay):
                    return
                continue
            failures = failures + 1 if self.probe_once(c.name, url, timeout) else 0
            if failures >= threshold:
                with contextlib.suppress(PodError, ProcessLookupError):
                    self.kill(c.name, signal.SIGKILL)
                started, failures = None, 0

    # -- state and control --------------------------------------------------------------

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(podman("inspect", self._resolve(container).podman_name).stdout)[0]

    def restart_count(self, container: str) -> int:
        return int(self.inspect(container).get("RestartCount", 0))

    def pid(self, container: str) -> int:
        """Host pid of the container's main process (0 while it is not running)."""
        return int(self.inspect(container)["State"]["Pid"])

    def returncode(self, container: str) -> int | None:
        state = self.inspect(container)["State"]
        return None if state.get("Running") else int(state.get("ExitCode", 0))

    def check_running(self) -> None:
        """Raise PodError if a container restarted without a kill of ours (a crash)."""
        infos = json.loads(podman("inspect", *(c.podman_name for c in self.containers.values())).stdout)
        for c, info in zip(self.containers.values(), infos):
            restarts = int(info.get("RestartCount", 0))
            if restarts > c.restarts_expected:
                raise PodError(f"{self.runtime}/{c.name} restarted {restarts} times (exit code "
                               f"{info['State'].get('ExitCode')}); command: {' '.join(c.argv)}\n"
                               f"--- log tail ---\n{self.logs(c.name, 3000)}")

    def exec(self, container: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a command inside the running container (as its user)."""
        return podman("exec", self._resolve(container).podman_name, *argv, check=False, timeout=timeout)

    def kill(self, container: str, sig: int = signal.SIGKILL, wait: float = 30.0) -> None:
        """Send `sig` to the container's main process, as a crash, the OOM killer or `kill` inside
        the container would; when it exits, restart policy Always brings the container back.

        Not `podman kill`: podman counts that as a stop by the user and then does not apply the
        restart policy (podman-run(1), --restart), unlike a kubelet.
        """
        c = self._resolve(container)
        pid = self.pid(c.name)
        if pid <= 0:
            raise PodError(f"{c.name} is not running")
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.expect_restart(c.name)
        os.kill(pid, sig)

    def restart(self, container: str) -> None:
        """Kill the container's process; restart policy Always starts it again."""
        self.kill(container, signal.SIGKILL)

    def stop(self, grace: float = 10.0) -> None:
        """Remove the pod (SIGTERM, SIGKILL after `grace`), its volumes and work directory."""
        if self._closed:
            return
        self._closed = True
        self._stop_probes.set()
        for fwd in self.forwards.values():
            fwd.close()
        podman("pod", "rm", "--force", "--time", str(int(grace)), self.name, check=False, timeout=grace + 120)
        for vname in self.tmpfs_volumes:
            podman("volume", "rm", "--force", vname, check=False)
        LEFTOVERS.discard(self._cleanup)
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def logs(self, container: str, tail: int | None = 4000) -> str:
        proc = subprocess.run([PODMAN, "logs", self._resolve(container).podman_name], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace", timeout=60, env=podman_env())
        return proc.stdout if tail is None else proc.stdout[-tail:]

