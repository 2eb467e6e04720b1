"""Run a ClusterServingRuntime of the Helm chart as local processes: a pod without a cluster.

    from conformance.pod_emulation import EmulatedPod
    with EmulatedPod.start("kserve-huggingface", model_dir=DIR, model_name="minilm") as pod:
        pod.wait_ready(300)
        httpx.post(f"{pod.http_url}/v1/models/minilm:predict", json={"instances": ["hi"]})

What it does, and what it replaces of Kubernetes/KServe (the only thing emulated here is the
cluster; the chart is rendered by the real Helm engine and the containers' own command, args
and env are run as they are):

* renders charts/kserve-huggingface-runtimes with `helm_python` (Helm's Go SDK) and picks the
  ClusterServingRuntime by name;
* replaces KServe's `{{.Name}}` placeholder with `model_name`;
* "mounts" volumes by rewriting paths in args and env: /mnt/models -> `model_dir` (KServe's
  storage initializer mounts it into `kserve-container` and `transformer-container`), every
  emptyDir volume -> one private directory per volume, shared by the containers that mount it
  (e.g. the tokenizer directory the Triton launcher exports and the transformer reads);
  /dev/shm stays the host's;
* gives the pod's network namespace a loopback stand-in: every port the pod uses (declared
  container ports, `--*_port` arguments, `host:port` arguments) is mapped to one free
  127.0.0.1 port, consistently across containers, and every `--bind_address` becomes 127.0.0.1;
* runs `python` as this interpreter (sys.executable), each container in its own process group
  (session), logs to a file per container;
* on exit (and at interpreter exit) terminates every process group it started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART_DIR = REPO / "charts" / "kserve-huggingface-runtimes"

MODEL_MOUNT = "/mnt/models"
SERVING_CONTAINER = "kserve-container"
TRANSFORMER_CONTAINER = "transformer-container"
NAME_PLACEHOLDER = "{{.Name}}"
# Paths a container may mount that must stay the host's own.
HOST_PATHS = ("/dev/shm",)

_PORT_ARG = re.compile(r"^(--[A-Za-z0-9_-]*port)=(\d+)$")
_PORT_FLAG = re.compile(r"^--[A-Za-z0-9_-]*port$")
_HOST_PORT = re.compile(r"\b(127\.0\.0\.1|localhost|0\.0\.0\.0):(\d+)\b")

_LIVE_GROUPS: set[int] = set()
_LIVE_LOCK = threading.Lock()


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@atexit.register
def _kill_leftovers() -> None:  # a crashed test run must not leave servers behind
    with _LIVE_LOCK:
        groups = list(_LIVE_GROUPS)
        _LIVE_GROUPS.clear()
    for pgid in groups:
        _kill_group(pgid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------
# rendering


def render_chart(values: dict[str, Any] | None = None, release: str = "emulated",
                 namespace: str = "kserve", chart_dir: Path | str = CHART_DIR) -> list[dict[str, Any]]:
    """Render the chart like `helm template` (client-side dry-run install) and return its objects."""
    from helm_python import Config

    config = Config(storage_driver="memory", namespace=namespace)
    try:
        release_info = config.install(str(chart_dir), release, values, dry_run="client", namespace=namespace)
    finally:
        with contextlib.suppress(Exception):
            config.close()
    return [doc for doc in yaml.safe_load_all(release_info.get("manifest", "")) if doc]


def find_runtime(objects: list[dict[str, Any]], runtime: str) -> dict[str, Any]:
    for obj in objects:
        if obj.get("kind") in ("ClusterServingRuntime", "ServingRuntime") and obj["metadata"]["name"] == runtime:
            return obj
    names = [o["metadata"]["name"] for o in objects if o.get("kind", "").endswith("ServingRuntime")]
    raise LookupError(f"the rendered chart has no serving runtime {runtime!r} (it has {names})")


def _free_ports(count: int) -> list[int]:
    """Reserved loopback ports outside the ephemeral range (hfserve.devtools.ports)."""
    from hfserve.devtools.ports import reserve_ports

    return reserve_ports(count)


# ------------------------------------------------------------------------------------------
# the pod


@dataclass
class Container:
    name: str
    argv: list[str]
    env: dict[str, str]
    spec: dict[str, Any]
    log_path: Path
    http_port: int | None = None
    grpc_port: int | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0
    _log: Any = field(default=None, repr=False)


class PodError(RuntimeError):
    """A container exited, or the pod did not become ready."""


class EmulatedPod:
    """One ClusterServingRuntime of the chart running as local processes. Use `EmulatedPod.start`."""

    def __init__(self, runtime: str, runtime_obj: dict[str, Any], model_dir: str, model_name: str,
                 extra_args: dict[str, list[str]] | None, work_dir: Path, keep_work_dir: bool) -> None:
        self.runtime = runtime
        self.runtime_obj = runtime_obj
        self.model_dir = str(Path(model_dir).resolve())
        self.model_name = model_name
        self.work_dir = work_dir
        self.keep_work_dir = keep_work_dir
        self.containers: dict[str, Container] = {}
        self.port_map: dict[int, int] = {}
        self._closed = False
        self._prepare(extra_args or {})

    # -- construction -------------------------------------------------------------------

    @classmethod
    def start(cls, runtime: str, model_dir: str | os.PathLike, model_name: str,
              values: dict[str, Any] | None = None, extra_args: dict[str, list[str]] | None = None,
              work_dir: str | os.PathLike | None = None, keep_work_dir: bool = False) -> EmulatedPod:
        """Render the chart, start every container of `runtime`, return the pod (a context manager).

        Does not wait for readiness: call `wait_ready`. Leaving the `with` block stops everything.
        """
        obj = find_runtime(render_chart(values), runtime)
        root = Path(tempfile.mkdtemp(prefix=f"pod-{runtime}-", dir=work_dir))
        try:
            pod = cls(runtime, obj, str(model_dir), model_name, extra_args, root, keep_work_dir)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        try:
            for name in pod.containers:
                pod._spawn(name)
        except BaseException:
            pod.stop()
            raise
        return pod

    def _prepare(self, extra_args: dict[str, list[str]]) -> None:
        spec = self.runtime_obj["spec"]
        containers = spec.get("containers") or []
        if not containers:
            raise PodError(f"{self.runtime}: no containers")
        unknown = set(extra_args) - {c["name"] for c in containers}
        if unknown:
            raise KeyError(f"extra_args for unknown containers {sorted(unknown)}")

        # volumes: one private directory per emptyDir volume
        volume_dirs: dict[str, str] = {}
        for vol in spec.get("volumes") or []:
            if "emptyDir" in vol:
                d = self.work_dir / "volumes" / vol["name"]
                d.mkdir(parents=True, exist_ok=True)
                volume_dirs[vol["name"]] = str(d)
            else:
                raise PodError(f"volume {vol['name']!r}: only emptyDir volumes can be emulated")
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)

        # ports: every pod port number -> one free loopback port
        numbers: set[int] = set()
        for c in containers:
            numbers.update(int(p["containerPort"]) for p in c.get("ports") or [])
            args = list(c.get("args") or []) + list(extra_args.get(c["name"], []))
            for i, arg in enumerate(args):
                if m := _PORT_ARG.match(arg):
                    numbers.add(int(m.group(2)))
                elif _PORT_FLAG.match(arg) and i + 1 < len(args) and args[i + 1].isdigit():
                    numbers.add(int(args[i + 1]))
                numbers.update(int(p) for _, p in _HOST_PORT.findall(arg))
        numbers.discard(0)
        self.port_map = dict(zip(sorted(numbers), _free_ports(len(numbers))))

        for c in containers:
            name = c["name"]
            mounts: dict[str, str] = {}
            if name in (SERVING_CONTAINER, TRANSFORMER_CONTAINER):
                mounts[MODEL_MOUNT] = self.model_dir
            for vm in c.get("volumeMounts") or []:
                if vm["mountPath"] in HOST_PATHS:
                    continue
                if vm["name"] not in volume_dirs:
                    raise PodError(f"{name}: volumeMount {vm['name']!r} has no volume")
                mounts[vm["mountPath"]] = volume_dirs[vm["name"]]
            args = [self._rewrite(a, mounts) for a in (c.get("args") or [])]
            args += [self._rewrite(a, mounts) for a in extra_args.get(name, [])]
            args = self._map_ports(args)
            args = self._loopback_only(args)
            command = [self._rewrite(a, mounts) for a in (c.get("command") or [])]
            if not command:
                raise PodError(f"{name}: no command (the image's entrypoint cannot be emulated)")
            if command[0] in ("python", "python3"):
                command[0] = sys.executable
            env = dict(os.environ)
            for item in c.get("env") or []:
                if "value" in item:
                    env[item["name"]] = self._map_ports_in(self._rewrite(str(item["value"]), mounts))
            env["HF_HUB_OFFLINE"] = "1"  # never reach the hub, whatever the values say
            env.setdefault("PYTHONUNBUFFERED", "1")
            self.containers[name] = Container(
                name=name, argv=command + args, env=env, spec=c,
                log_path=self.work_dir / "logs" / f"{name}.log",
                http_port=self._arg_int(args, "--http_port"), grpc_port=self._arg_int(args, "--grpc_port"),
            )

    def _rewrite(self, value: str, mounts: dict[str, str]) -> str:
        value = value.replace(NAME_PLACEHOLDER, self.model_name)
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

    @staticmethod
    def _loopback_only(args: list[str]) -> list[str]:
        out, seen, skip = [], False, False
        for i, arg in enumerate(args):
            if skip:
                skip = False
                continue
            if arg.startswith("--bind_address="):
                arg, seen = "--bind_address=127.0.0.1", True
            elif arg == "--bind_address" and i + 1 < len(args):
                out += ["--bind_address", "127.0.0.1"]
                seen, skip = True, True
                continue
            out.append(arg)
        if not seen:
            out.append("--bind_address=127.0.0.1")
        return out

    @staticmethod
    def _arg_int(args: list[str], flag: str) -> int | None:
        for i, arg in enumerate(args):
            if arg.startswith(flag + "="):
                return int(arg.split("=", 1)[1])
            if arg == flag and i + 1 < len(args):
                return int(args[i + 1])
        return None

    # -- process control ----------------------------------------------------------------

    def _resolve(self, container: str) -> Container:
        if container in self.containers:
            return self.containers[container]
        aliases = {"serving": self.serving_container_name, "transformer": TRANSFORMER_CONTAINER,
                   "predictor": SERVING_CONTAINER, "triton": SERVING_CONTAINER if self.has_transformer else None,
                   "huggingface": SERVING_CONTAINER if not self.has_transformer else None}
        name = aliases.get(container)
        if name in self.containers:
            return self.containers[name]
        raise KeyError(f"{self.runtime} has no container {container!r} (it has {list(self.containers)})")

    def _spawn(self, name: str) -> None:
        c = self.containers[name]
        if c._log:
            c._log.close()
        c._log = open(c.log_path, "ab")  # noqa: SIM115 - closed in stop()
        c._log.write(f"\n===== start {c.starts + 1}: {' '.join(c.argv)}\n".encode())
        c._log.flush()
        from hfserve.devtools.processes import die_with_parent  # a killed test run takes its containers along

        c.proc = subprocess.Popen(c.argv, env=c.env, cwd=self.work_dir, stdin=subprocess.DEVNULL,
                                  stdout=c._log, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=die_with_parent)
        c.starts += 1
        with _LIVE_LOCK:
            _LIVE_GROUPS.add(c.proc.pid)

    def pid(self, container: str) -> int:
        """Pid of the container's main process (also its process group id)."""
        c = self._resolve(container)
        if c.proc is None:
            raise PodError(f"{c.name} is not running")
        return c.proc.pid

    def returncode(self, container: str) -> int | None:
        c = self._resolve(container)
        return None if c.proc is None else c.proc.poll()

    def kill(self, container: str, sig: int = signal.SIGKILL, wait: float = 30.0) -> int | None:
        """Send `sig` to the container's process group and return its exit code once it exited.

        SIGKILL/SIGTERM wait up to `wait` seconds (then SIGKILL) and reap the whole group; other
        signals return None if the process is still running after half a second. `wait=0` only
        sends the signal (e.g. SIGTERM while requests are in flight); `restart` or `stop` reap it.
        """
        c = self._resolve(container)
        if c.proc is None:
            return None
        _kill_group(c.proc.pid, sig)
        if wait <= 0:
            return c.proc.poll()
        try:
            code = c.proc.wait(timeout=wait if sig in (signal.SIGKILL, signal.SIGTERM) else 0.5)
        except subprocess.TimeoutExpired:
            if sig in (signal.SIGKILL, signal.SIGTERM):
                _kill_group(c.proc.pid, signal.SIGKILL)
                code = c.proc.wait(timeout=wait)
            else:
                return None
        _kill_group(c.proc.pid, signal.SIGKILL)  # grandchildren left in the group
        with _LIVE_LOCK:
            _LIVE_GROUPS.discard(c.proc.pid)
        return code

    def restart(self, container: str) -> None:
        """Start the container's command again (after killing what is left of it), like the kubelet does."""
        c = self._resolve(container)
        if c.proc is not None and c.proc.poll() is None:
            self.kill(c.name, signal.SIGKILL)
        elif c.proc is not None:
            _kill_group(c.proc.pid, signal.SIGKILL)
            with _LIVE_LOCK:
                _LIVE_GROUPS.discard(c.proc.pid)
        self._spawn(c.name)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every container (SIGTERM to each group, SIGKILL after `grace`), remove the work dir."""
        if self._closed:
            return
        self._closed = True
        running = [c for c in self.containers.values() if c.proc is not None]
        for c in running:
            _kill_group(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for c in running:
            _kill_group(c.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=10)
            with _LIVE_LOCK:
                _LIVE_GROUPS.discard(c.proc.pid)
        for c in self.containers.values():
            if c._log:
                c._log.close()
                c._log = None
        if not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> EmulatedPod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------

    @property
    def has_transformer(self) -> bool:
        return TRANSFORMER_CONTAINER in self.containers

    @property
    def serving_container_name(self) -> str:
        """The container that owns the pod's serving port (the one KServe's Service targets)."""
        return TRANSFORMER_CONTAINER if self.has_transformer else SERVING_CONTAINER

    @property
    def container_names(self) -> list[str]:
        """Container names, the serving container first."""
        first = self.serving_container_name
        return [first] + [n for n in self.containers if n != first]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self._resolve('serving').http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self._resolve('serving').grpc_port}"

    @property
    def triton_http_url(self) -> str | None:
        return f"http://127.0.0.1:{self.containers[SERVING_CONTAINER].http_port}" if self.has_transformer else None

    @property
    def triton_grpc_target(self) -> str | None:
        return f"127.0.0.1:{self.containers[SERVING_CONTAINER].grpc_port}" if self.has_transformer else None

    def argv(self, container: str) -> list[str]:
        """The command line the container was started with (after path/port mapping)."""
        return list(self._resolve(container).argv)

    def logs(self, container: str, tail: int | None = 4000) -> str:
        path = self._resolve(container).log_path
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else text[-tail:]

    # -- readiness ----------------------------------------------------------------------

    def check_running(self) -> None:
        """Raise PodError if any container's process has exited (with its exit code and log tail)."""
        for c in self.containers.values():
            if c.proc is not None and (code := c.proc.poll()) is not None:
                raise PodError(f"{self.runtime}/{c.name} exited with code {code}; "
                               f"command: {' '.join(c.argv)}\n--- log tail ---\n{self.logs(c.name, 3000)}")

    def _probe_url(self, c: Container) -> str | None:
        probe = (c.spec.get("readinessProbe") or {}).get("httpGet")
        if not probe:
            return None
        port = probe.get("port")
        if isinstance(port, str):  # a named port
            port = next((p["containerPort"] for p in c.spec.get("ports") or [] if p.get("name") == port), None)
        if port is None:
            return None
        mapped = self.port_map.get(int(port), int(port))
        return f"http://127.0.0.1:{mapped}{probe.get('path', '/')}"

    def _exec_probe(self, c: Container) -> list[str] | None:
        command = ((c.spec.get("readinessProbe") or {}).get("exec") or {}).get("command")
        if not command:
            return None
        argv = [self._map_ports_in(a) for a in command]
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv

    def _probe_once(self, name: str, how: str | list[str]) -> str | None:
        """None when the probe passes, else why it did not."""
        if isinstance(how, list):
            try:
                done = subprocess.run(how, env=self.containers[name].env, capture_output=True, timeout=10)
            except subprocess.TimeoutExpired:
                return f"{name}: exec probe timed out"
            return None if done.returncode == 0 else f"{name}: exec probe exited {done.returncode}"
        try:
            with urllib.request.urlopen(how, timeout=3) as resp:  # noqa: S310 - loopback only
                return None if 200 <= resp.status < 300 else f"{name}: {how} -> {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"{name}: {how} -> {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{name}: {how} -> {exc!r}"

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait until every container's readiness probe passes (httpGet, or exec run locally).

        Containers without a probe must merely stay running; the serving container is always
        checked, on its probe or else on `/v2/health/ready`.
        Raises PodError as soon as a process exits (e.g. an argparse error, exit code 2).
        """
        deadline = time.monotonic() + timeout
        pending: dict[str, str | list[str]] = {}
        for c in self.containers.values():
            how = self._probe_url(c) or self._exec_probe(c)
            if how:
                pending[c.name] = how
        serving = self._resolve("serving")
        pending.setdefault(serving.name, f"http://127.0.0.1:{serving.http_port}/v2/health/ready")
        last = ""
        while True:
            self.check_running()
            for name, how in list(pending.items()):
                why = self._probe_once(name, how)
                if why is None:
                    pending.pop(name)
                else:
                    last = why
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n} log tail ---\n{self.logs(n, 2000)}" for n in self.containers)
                raise PodError(f"{self.runtime} not ready after {timeout:.0f}s ({last})\n{tails}")
            time.sleep(0.3)

    def request_json(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        """Small helper: send JSON to the serving port, return (status, decoded body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http_url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")
