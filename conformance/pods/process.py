"""Run a ClusterServingRuntime of the Helm chart as local processes: a pod without a cluster.

    from conformance.pods.process import EmulatedPod
    with EmulatedPod.start("kserve-huggingface", model_dir=DIR, model_name="minilm") as pod:
        pod.wait_ready(300)
        httpx.post(f"{pod.http_url}/v1/models/minilm:predict", json={"instances": ["hi"]})

The pod comes from the KServe model, not from a rewrite of its own: the chart is rendered by the
real Helm engine, the runtime is paired with an InferenceService named `model_name` that pins it,
and `conformance.kserve_model.assemble_pod` builds the predictor pod as KServe would (merged
kserve-container, placeholders by KServe's template rules, container order, /mnt/models mounted
read-only into kserve-container and transformer-container, Standard-mode default readiness
probes, INFERENCE_SERVICE_NAME). What stands in for the cluster:

* volumes: every emptyDir is one private directory per volume, shared by the containers that
  mount it; the model volume is `model_dir`; container paths in args and env are rewritten to
  those directories; /dev/shm stays the host's, and stopping the pod removes the shared-memory segments
  its Triton left (those of launchers no longer alive);
* /mnt/models read-only: where the machine allows (root with `unshare`), each container runs in
  its own mount namespace in which the model directory is bind-mounted read-only, so a write
  there fails as on a cluster; as a non-root user the model is copied with read-only permissions;
  `pod.model_read_only` says whether it is enforced;
* uid: when this process is root and `setpriv` exists, the containers run as the securityContext's
  runAsUser, or uid 1000 (the images' USER) when runAsNonRoot is set; the read-only root
  filesystem is not emulated;
* environment: the container's `env` from the pod spec only, plus what running from this
  machine's virtualenv needs: PATH, and PYTHONPATH when set (so a worktree's code is imported),
  and PYTHONUNBUFFERED=1 for the log files. Nothing else of the host's environment is passed;
* network: every port the pod uses (declared ports, `--*_port` and `host:port` arguments, probe
  ports) is mapped to one free 127.0.0.1 port, consistently across containers; a
  `--bind_address=0.0.0.0` becomes 127.0.0.1 so nothing listens beyond loopback here (recorded in
  `pod.rebound`; the chart's own bind addresses are checked on the rendered chart);
* processes: `python` is this interpreter (sys.executable); each container is its own session
  and, when isolated, its own mount namespace. `kill(SIGKILL)` kills every process of the
  container (its mount namespace, or its process tree), including processes started in another
  session such as tritonserver and its Python-backend stubs, as a container kill does; when a
  container's main process exits, what is left of the container is killed too;
* readiness: httpGet, tcpSocket (KServe's defaults included) and exec probes, run from here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfserve.triton.supervisor import remove_stale_segments

from conformance.chart import build_pod
from conformance.kserve_model import NEWEST
from conformance.kserve_model.pod_assembly import MODEL_VOLUME
from conformance.pods.base import LEFTOVERS, NOT_RUN, Container, Pod, PodError, argv_int
from devkit.ports import reserve_ports

# Paths a container may mount that must stay the host's own.
HOST_PATHS = ("/dev/shm",)
IMAGE_UID = 1000  # USER of images/*/Dockerfile

_PORT_ARG = re.compile(r"^(--[A-Za-z0-9_-]*port)=(\d+)$")
_PORT_FLAG = re.compile(r"^--[A-Za-z0-9_-]*port$")
_HOST_PORT = re.compile(r"\b(127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)\b")

# Runs inside the container's new mount namespace: bind each SRC onto DST read-only, then exec.
_MOUNT_SCRIPT = (
    'set -e; while [ "$1" != "--" ]; do mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; shift 2; done; '
    'shift; exec "$@"'
)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


_UID_OK: dict[int, bool] = {}


def _uid_can_run(uid: int) -> bool:
    """Whether this interpreter and the code on PYTHONPATH can run as `uid` (e.g. not when the
    interpreter lives under a root-only home directory)."""
    if uid not in _UID_OK:
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        try:
            done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                                   sys.executable, "-c", "import hfserve, subprocess, sys; "
                                   "subprocess.run([sys.executable, '-c', 'pass'], check=True)"],
                                  env=env, capture_output=True, timeout=60, cwd="/")
            _UID_OK[uid] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _UID_OK[uid] = False
    return _UID_OK[uid]


def isolation_available() -> bool:
    """Whether containers can get their own mount namespace (root and a working `unshare`)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class ProcessContainer(Container):
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path = Path("/dev/null")
    ro_binds: list[tuple[str, str]] = field(default_factory=list)  # (source, path) bound read-only
    uid: int | None = None
    proc: subprocess.Popen | None = None
    mnt_ns: str | None = None  # the container's mount namespace, when isolated
    starts: int = 0
    _log: Any = field(default=None, repr=False)
    _tree: dict[int, float] = field(default_factory=dict, repr=False)  # pid -> its start time (pids get reused)
    _cleanup: int | None = field(default=None, repr=False)

    def pids(self) -> set[int]:
        """Every live process of this container: same mount namespace, or the main process's tree."""
        pids: set[int] = set()
        if self.proc is None:
            return pids
        if self.mnt_ns:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry}/ns/mnt") == self.mnt_ns and int(entry) != os.getpid():
                            pids.add(int(entry))
            return pids
        import psutil

        with contextlib.suppress(psutil.Error):
            main = psutil.Process(self.proc.pid)
            for p in [main, *main.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    self._tree[p.pid] = p.create_time()
        for pid, started in list(self._tree.items()):
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                # A pid seen earlier may now belong to another program (another test's server): never kill that.
                if p.create_time() == started and p.status() != psutil.STATUS_ZOMBIE:
                    pids.add(pid)
        return pids

    def kill_all(self, timeout: float = 10.0) -> None:
        """SIGKILL every process of the container and wait until none is left (a container kill)."""
        if self.proc is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids()
            if self.proc.poll() is None:  # once reaped, its pid (= its group id) may lead another program's group
                _kill_group(self.proc.pid, signal.SIGKILL)
            for pid in pids:
                _kill_pid(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.2)
            if not (pids - {self.proc.pid}) and self.proc.poll() is not None or time.monotonic() > deadline:
                break
        LEFTOVERS.discard(self._cleanup)
        self._cleanup = None


class EmulatedPod(Pod):
    """One ClusterServingRuntime of the chart running as local processes. Use `EmulatedPod.start`."""

    containers: dict[str, ProcessContainer]

    def __init__(self, runtime: str, manifest: dict[str, Any], model_dir: str, model_name: str,
                 extra_args: dict[str, list[str]] | None, work_dir: Path, keep_work_dir: bool,
                 isolate: bool | None = None, run_as: int | None | str = "auto") -> None:
        super().__init__(runtime, manifest)
        self.model_dir = str(Path(model_dir).resolve())
        self.model_name = model_name
        self.work_dir = work_dir
        self.keep_work_dir = keep_work_dir
        self.isolated = isolation_available() if isolate is None else isolate
        self.run_as = run_as
        self.port_map: dict[int, int] = {}
        self.rebound: list[str] = []
        self.model_read_only = False
        self._prepare(extra_args or {})

    # -- construction -------------------------------------------------------------------

    @classmethod
    def start(cls, runtime: str, model_dir: str | os.PathLike, model_name: str,
              values: dict[str, Any] | None = None, extra_args: dict[str, list[str]] | None = None,
              work_dir: str | os.PathLike | None = None, keep_work_dir: bool = False,
              kserve_version: str = NEWEST, isolate: bool | None = None,
              run_as: int | None | str = "auto") -> EmulatedPod:
        """Render the chart, assemble `runtime`'s pod as KServe would (Standard mode), start every
        container, return the pod (a context manager).

        Does not wait for readiness: call `wait_ready`. Leaving the `with` block stops everything.
        """
        manifest = build_pod(runtime, model_name, values, kserve_version)
        root = Path(tempfile.mkdtemp(prefix=f"pod-{runtime}-", dir=work_dir))
        root.chmod(0o755)  # containers may run as another uid
        try:
            emulated = cls(runtime, manifest, str(model_dir), model_name, extra_args, root, keep_work_dir, isolate,
                           run_as)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        try:
            for name in emulated.containers:
                emulated._spawn(name)
        except BaseException:
            emulated.stop()
            raise
        return emulated
    def _uid_for(self, container: dict[str, Any]) -> int | None:
        if self.run_as is None or os.geteuid() != 0 or not shutil.which("setpriv"):
            return None
        if isinstance(self.run_as, int):
            return self.run_as if _uid_can_run(self.run_as) else None
        sc = container.get("securityContext") or {}
        uid = int(sc["runAsUser"]) if sc.get("runAsUser") is not None else IMAGE_UID if sc.get("runAsNonRoot") else None
        return uid if uid is not None and _uid_can_run(uid) else None

    def _model_view(self, read_only: bool) -> tuple[str, bool]:
        """Directory the containers see as /mnt/models, and whether read-only is enforced."""
        view = self.work_dir / "volumes" / MODEL_VOLUME
        if not read_only:
            return self.model_dir, False
        if self.isolated:
            view.mkdir(parents=True, exist_ok=True)
            return str(view), True  # bound read-only inside each container's mount namespace
        if os.geteuid() != 0:
            shutil.copytree(self.model_dir, view, symlinks=False)
            for root, dirs, files in os.walk(view):
                for f in files:
                    os.chmod(os.path.join(root, f), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.chmod(root, 0o555)
            return str(view), True
        return self.model_dir, False  # root without namespaces: nothing can stop a write

    def _prepare(self, extra_args: dict[str, list[str]]) -> None:
        spec = self.manifest["spec"]
        containers = [c for c in spec.get("containers") or [] if c["name"] not in NOT_RUN]
        if not containers:
            raise PodError(f"{self.runtime}: no containers")
        unknown = set(extra_args) - {c["name"] for c in containers}
        if unknown:
            raise KeyError(f"extra_args for unknown containers {sorted(unknown)}")

        volume_dirs: dict[str, str] = {}
        for vol in spec.get("volumes") or []:
            if vol["name"] == MODEL_VOLUME:
                continue
            if "emptyDir" not in vol:
                raise PodError(f"volume {vol['name']!r}: only emptyDir volumes can be emulated")
            d = self.work_dir / "volumes" / vol["name"]
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o777)  # an emptyDir is writable by the pod's uid (fsGroup-like)
            volume_dirs[vol["name"]] = str(d)
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)

        numbers: set[int] = set()
        for c in containers:
            numbers.update(int(p["containerPort"]) for p in c.get("ports") or [])
            for key in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(key) or {}
                for handler in ("httpGet", "tcpSocket"):
                    if isinstance((probe.get(handler) or {}).get("port"), int):
                        numbers.add(probe[handler]["port"])
            args = list(c.get("args") or []) + list(extra_args.get(c["name"], []))
            for i, arg in enumerate(args):
                if m := _PORT_ARG.match(arg):
                    numbers.add(int(m.group(2)))
                elif _PORT_FLAG.match(arg) and i + 1 < len(args) and args[i + 1].isdigit():
                    numbers.add(int(args[i + 1]))
                numbers.update(int(p) for _, p in _HOST_PORT.findall(arg))
        numbers.discard(0)
        self.port_map = dict(zip(sorted(numbers), reserve_ports(len(numbers))))

        model_mounts = [vm for c in containers for vm in c.get("volumeMounts") or [] if vm["name"] == MODEL_VOLUME]
        view, enforced = self._model_view(all(vm.get("readOnly") for vm in model_mounts))
        self.model_read_only = enforced and bool(model_mounts)

        for c in containers:
            name = c["name"]
            mounts: dict[str, str] = {}
            ro_binds: list[tuple[str, str]] = []
            for vm in c.get("volumeMounts") or []:
                if vm["mountPath"] in HOST_PATHS:
                    continue
                if vm["name"] == MODEL_VOLUME:
                    mounts[vm["mountPath"]] = view
                    if self.isolated and view != self.model_dir:
                        ro_binds.append((self.model_dir, view))
                    continue
                if vm["name"] not in volume_dirs:
                    raise PodError(f"{name}: volumeMount {vm['name']!r} has no volume")
                mounts[vm["mountPath"]] = volume_dirs[vm["name"]]
            pod_args = [self._rewrite(a, mounts) for a in (c.get("args") or [])]
            pod_args += [self._rewrite(a, mounts) for a in extra_args.get(name, [])]
            args = self._loopback_only(name, self._map_ports(pod_args))
            command = [self._rewrite(a, mounts) for a in (c.get("command") or [])]
            if not command:
                raise PodError(f"{name}: no command (the image's entrypoint cannot be emulated)")
            if command[0] in ("python", "python3"):
                command[0] = sys.executable
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1"}
            if os.environ.get("PYTHONPATH"):
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            for item in c.get("env") or []:
                if "value" in item:
                    env[item["name"]] = self._map_ports_in(self._rewrite(str(item["value"]), mounts))
            self.containers[name] = ProcessContainer(
                name=name, argv=command + args, env=env, spec=c, ro_binds=ro_binds, uid=self._uid_for(c),
                log_path=self.work_dir / "logs" / f"{name}.log",
                http_port=argv_int(pod_args, "--http_port"), grpc_port=argv_int(pod_args, "--grpc_port"),
            )

    def _rewrite(self, value: str, mounts: dict[str, str]) -> str:
        if not mounts:
            return value
        # one pass, longest mount path first, so a mapped path is never mapped again
        alternatives = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
        pattern = re.compile(r"(?:^|(?<==)|(?<=:))(" + alternatives + r")(?=/|$|:|,)")
        return pattern.sub(lambda m: mounts[m.group(1)], value)

    def _map_ports_in(self, arg: str) -> str:
        return _HOST_PORT.sub(lambda m: f"127.0.0.1:{self.port_map.get(int(m.group(2)), int(m.group(2)))}", arg)

    def _map_ports(self, args: list[str]) -> list[str]:
        out = []
        for i, arg in enumerate(args):
            if m := _PORT_ARG.match(arg):
                arg = f"{m.group(1)}={self.port_map.get(int(m.group(2)), int(m.group(2)))}"
            elif i > 0 and _PORT_FLAG.match(args[i - 1]) and arg.isdigit():
                arg = str(self.port_map.get(int(arg), int(arg)))
            out.append(self._map_ports_in(arg))
        return out

    def _loopback_only(self, name: str, args: list[str]) -> list[str]:
        """A wildcard bind address becomes loopback (recorded in `rebound`); nothing is added."""
        out = []
        for i, arg in enumerate(args):
            if arg.startswith("--bind_address=") and arg != "--bind_address=127.0.0.1":
                self.rebound.append(f"{name}: {arg}")
                arg = "--bind_address=127.0.0.1"
            elif i > 0 and args[i - 1] == "--bind_address" and arg != "127.0.0.1":
                self.rebound.append(f"{name}: --bind_address {arg}")
                arg = "127.0.0.1"
            out.append(arg)
        return out

    # -- process control ----------------------------------------------------------------

    def address(self, port: int) -> str:
        return f"127.0.0.1:{self.port_map.get(port, port)}"

    def _launch_argv(self, c: ProcessContainer) -> list[str]:
        argv = list(c.argv)
        if c.uid is not None:
            argv = ["setpriv", f"--reuid={c.uid}", f"--regid={c.uid}", "--clear-groups", "--"] + argv
        if self.isolated:
            binds = [x for pair in c.ro_binds for x in pair]
            argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", _MOUNT_SCRIPT, "sh",
                    *binds, "--", *argv]
        return argv

    def _spawn(self, name: str) -> None:
        c = self.containers[name]
        if c._log:
            c._log.close()
        c._log = open(c.log_path, "ab")  # noqa: SIM115 - closed in stop()
        c._log.write(f"\n===== start {c.starts + 1}: {' '.join(c.argv)}\n".encode())
        c._log.flush()
        from devkit.processes import die_with_parent  # a killed test run takes its containers along

        c.proc = subprocess.Popen(self._launch_argv(c), env=c.env, cwd=self.work_dir, stdin=subprocess.DEVNULL,
                                  stdout=c._log, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=die_with_parent)
        c.starts += 1
        c._tree = {}
        c.pids()  # records the main process (and its start time) at once
        c.mnt_ns = None
        if self.isolated:
            own = os.readlink("/proc/self/ns/mnt")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and c.proc.poll() is None:
                with contextlib.suppress(OSError):
                    ns = os.readlink(f"/proc/{c.proc.pid}/ns/mnt")
                    if ns != own:
                        c.mnt_ns = ns
                        break
                time.sleep(0.01)
        LEFTOVERS.discard(c._cleanup)
        c._cleanup = LEFTOVERS.add(c.kill_all)

    def pid(self, container: str) -> int:
        """Pid of the container's main process (also its process group id)."""
        c = self._resolve(container)
        if c.proc is None:
            raise PodError(f"{c.name} is not running")
        return c.proc.pid

    def pids(self, container: str) -> set[int]:
        """Every live process of the container (main process, children, other sessions it started)."""
        return self._resolve(container).pids()

    def returncode(self, container: str) -> int | None:
        c = self._resolve(container)
        return None if c.proc is None else c.proc.poll()

    def kill(self, container: str, sig: int = signal.SIGKILL, wait: float = 30.0) -> int | None:
        """Signal the container like the kubelet/container runtime does and return the exit code.

        SIGKILL kills every process of the container at once. SIGTERM goes to the main process;
        after `wait` seconds the rest is killed, and once the main process exited nothing of the
        container survives it. Other signals go to the main process and return None if it still runs
        after half a second. `wait=0` only sends the signal (e.g. SIGTERM while requests are in
        flight); `restart` or `stop` reap it.
        """
        c = self._resolve(container)
        if c.proc is None:
            return None
        if sig == signal.SIGKILL:
            c.kill_all(timeout=max(wait, 1.0))
            return c.proc.poll()
        c.proc.send_signal(sig)  # not once reaped: its pid may be another program's by now
        if wait <= 0:
            return c.proc.poll()
        try:
            code = c.proc.wait(timeout=wait if sig == signal.SIGTERM else 0.5)
        except subprocess.TimeoutExpired:
            if sig != signal.SIGTERM:
                return None
            code = None
        c.kill_all()
        return code if code is not None else c.proc.poll()

    def restart(self, container: str) -> None:
        """Start the container's command again (after killing what is left of it), like the kubelet does."""
        c = self._resolve(container)
        if c.proc is not None:
            c.kill_all()
        self._spawn(c.name)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every container (SIGTERM to each main process, then SIGKILL to everything of
        the container after `grace`), remove the work dir."""
        if self._closed:
            return
        self._closed = True
        running = [c for c in self.containers.values() if c.proc is not None]
        for c in running:
            c.proc.send_signal(signal.SIGTERM)  # not once reaped: its pid may be another program's by now
        deadline = time.monotonic() + grace
        for c in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for c in running:
            c.kill_all()
        # /dev/shm is the host's here, not a per-pod tmpfs: remove what the pod's Triton left (dead launchers' only)
        remove_stale_segments()
        for c in self.containers.values():
            if c._log:
                c._log.close()
                c._log = None
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def logs(self, container: str, tail: int | None = 4000) -> str:
        path = self._resolve(container).log_path
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else text[-tail:]

    # -- readiness ----------------------------------------------------------------------

    def check_running(self) -> None:
        """Raise PodError if any container's process has exited (no kubelet restarts it here: a test that
        kills a container restarts it itself)."""
        for c in self.containers.values():
            if c.proc is not None and (code := c.proc.poll()) is not None:
                raise PodError(f"{self.runtime}/{c.name} exited with code {code}; "
                               f"command: {' '.join(c.argv)}\n--- log tail ---\n{self.logs(c.name, 3000)}")

    def _exec_probe(self, c: ProcessContainer) -> list[str] | None:
        command = ((c.spec.get("readinessProbe") or {}).get("exec") or {}).get("command")
        if not command:
            return None
        argv = [self._map_ports_in(a) for a in command]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv

    def _run_probe_command(self, name: str, argv: list[str]) -> str | None:
        try:
            done = subprocess.run(argv, env=self.containers[name].env, capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            return f"{name}: exec probe timed out"
        return None if done.returncode == 0 else f"{name}: exec probe exited {done.returncode}"
