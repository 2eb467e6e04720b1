"""What every pod of the harness offers: one ClusterServingRuntime of the chart, running somewhere.

A pod is built from the predictor pod KServe assembles (`conformance.chart.build_pod`). Subclasses say
how containers start and stop (`process.EmulatedPod`: host processes; `podman.PodmanPod`: podman) and how a
port of the pod is reached from here (`address`); the rest is here: container names and their aliases,
readiness probes and the wait for them, the addresses of the serving and Triton ports, argv and logs.

The test harness uses a pod as its deployment's control: `kill(container, sig)`, `restart`, `wait_ready`,
`expect_restart`, `restarts_by_itself`, `serving_container` / `triton_container`.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import itertools
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MODEL_MOUNT = "/mnt/models"
SERVING_CONTAINER = "kserve-container"
TRANSFORMER_CONTAINER = "transformer-container"
NOT_RUN = ("queue-proxy",)  # Knative's sidecar (Serverless mode): a cluster's part, not the runtime's


class PodError(RuntimeError):
    """A container exited, or the pod did not become ready."""


def argv_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in a command line (the first one), else None."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def argv_int(args: list[str], flag: str) -> int | None:
    value = argv_value(args, flag)
    return None if value is None else int(value)


class Leftovers:
    """Clean-ups of everything started and not yet stopped, run at exit: a crashed test run must not leave
    servers behind."""

    def __init__(self) -> None:
        self._cleanups: dict[int, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        atexit.register(self.run)

    def add(self, cleanup: Callable[[], None]) -> int:
        with self._lock:
            token = next(self._tokens)
            self._cleanups[token] = cleanup
        return token

    def discard(self, token: int | None) -> None:
        with self._lock:
            self._cleanups.pop(token, None)

    def run(self) -> None:
        with self._lock:
            cleanups = list(self._cleanups.values())
            self._cleanups.clear()
        for cleanup in cleanups:
            with contextlib.suppress(Exception):
                cleanup()


LEFTOVERS = Leftovers()


def serving_container_of(names: list[str]) -> str:
    """The container that owns the pod's serving port (the one KServe's Service targets)."""
    return TRANSFORMER_CONTAINER if TRANSFORMER_CONTAINER in names else SERVING_CONTAINER


@dataclass
class Container:
    """One container of a pod: its spec in the assembled pod, its command line, its pod-side ports."""

    name: str
    spec: dict[str, Any]
    argv: list[str]
    http_port: int | None = None  # pod-side --http_port (address() maps it to this machine)
    grpc_port: int | None = None
    restarts_expected: int = 0    # restarts a test caused (expect_restart), not crashes


class Pod(abc.ABC):
    """One ClusterServingRuntime of the chart. Subclasses start it (`start`) and control its containers."""

    restarts_by_itself = False  # True where a restart policy brings an exited container back (no `restart` needed)
    ready_timeout = 300.0
    probe_interval_s = 0.3

    def __init__(self, runtime: str, manifest: dict[str, Any]) -> None:
        self.runtime = runtime
        self.manifest = manifest  # the assembled core/v1 Pod
        self.containers: dict[str, Container] = {}  # in KServe's pod order (kserve-container first)
        self._closed = False

    # -- what a subclass supplies ----------------------------------------------------------

    @abc.abstractmethod
    def address(self, port: int) -> str:
        """host:port on this machine that reaches `port` of the pod."""

    @abc.abstractmethod
    def pid(self, container: str) -> int:
        """Pid (on this machine) of the container's main process."""

    @abc.abstractmethod
    def returncode(self, container: str) -> int | None:
        """The exit code of the container's main process, None while it runs."""

    @abc.abstractmethod
    def check_running(self) -> None:
        """Raise PodError when a container died without a test asking for it (exit code and log tail)."""

    @abc.abstractmethod
    def kill(self, container: str, sig: int = signal.SIGKILL, wait: float = 30.0) -> int | None:
        """Signal the container as a crash, the OOM killer or the kubelet would."""

    @abc.abstractmethod
    def restart(self, container: str) -> None:
        """Start the container again, as the kubelet does after it exited."""

    @abc.abstractmethod
    def stop(self, grace: float = 10.0) -> None:
        """Stop every container and remove what the pod left on this machine (idempotent)."""

    @abc.abstractmethod
    def logs(self, container: str, tail: int | None = 4000) -> str:
        """The container's output (the last `tail` characters)."""

    def _exec_probe(self, c: Container) -> list[str] | None:
        """An exec readiness probe as a command line to run from here, where the pod can."""
        return None

    def _run_probe_command(self, name: str, argv: list[str]) -> str | None:
        raise NotImplementedError

    # -- containers -------------------------------------------------------------------------

    def __enter__(self) -> Pod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def has_transformer(self) -> bool:
        return TRANSFORMER_CONTAINER in self.containers

    @property
    def serving_container(self) -> str:
        return serving_container_of(list(self.containers))

    @property
    def triton_container(self) -> str | None:
        """The Triton container of kserve-huggingface-triton (None for a one-container runtime)."""
        return SERVING_CONTAINER if self.has_transformer else None

    @property
    def container_names(self) -> list[str]:
        """Container names in KServe's pod order (kserve-container first)."""
        return list(self.containers)

    def _resolve(self, container: str) -> Container:
        if container in self.containers:
            return self.containers[container]
        aliases = {"serving": self.serving_container, "transformer": TRANSFORMER_CONTAINER,
                   "predictor": SERVING_CONTAINER, "triton": self.triton_container,
                   "huggingface": SERVING_CONTAINER if not self.has_transformer else None}
        name = aliases.get(container)
        if name in self.containers:
            return self.containers[name]
        raise KeyError(f"{self.runtime} has no container {container!r} (it has {list(self.containers)})")

    def argv(self, container: str) -> list[str]:
        """The command line the container was started with."""
        return list(self._resolve(container).argv)

    def expect_restart(self, container: str) -> None:
        """A test is about to make this container's main process exit (directly, or by killing a child it
        supervises): the restart that follows is not a crash for check_running."""
        self._resolve(container).restarts_expected += 1

    # -- addresses --------------------------------------------------------------------------

    def _port_address(self, container: str, kind: str) -> str:
        c = self._resolve(container)
        port = c.http_port if kind == "http" else c.grpc_port
        if port is None:
            raise PodError(f"{self.runtime}/{c.name} has no --{kind}_port")
        return self.address(port)

    @property
    def http_url(self) -> str:
        return "http://" + self._port_address(self.serving_container, "http")

    @property
    def grpc_target(self) -> str:
        return self._port_address(self.serving_container, "grpc")

    @property
    def triton_http_url(self) -> str | None:
        return "http://" + self._port_address(SERVING_CONTAINER, "http") if self.has_transformer else None

    @property
    def triton_grpc_target(self) -> str | None:
        return self._port_address(SERVING_CONTAINER, "grpc") if self.has_transformer else None

    # -- probes -----------------------------------------------------------------------------

    def probe_target(self, c: Container, probe: dict[str, Any]) -> str | None:
        """An httpGet probe as its URL, a tcpSocket probe as tcp://host:port (as reached from here)."""
        action = probe.get("httpGet") or probe.get("tcpSocket")
        if not action:
            return None
        port = action.get("port")
        if isinstance(port, str) and not port.isdigit():  # a named port: the container's own first
            ports = [*(c.spec.get("ports") or []),
                     *(p for other in self.containers.values() for p in other.spec.get("ports") or [])]
            port = next((p["containerPort"] for p in ports if p.get("name") == port), None)
        if port is None:
            return None
        where = self.address(int(port))
        if "tcpSocket" in probe:
            return f"tcp://{where}"
        return f"http://{where}{action.get('path', '/')}"

    def probe_once(self, name: str, how: str | list[str], timeout: float = 3.0) -> str | None:
        """None when the probe passes, else why not (httpGet: 2xx/3xx; tcpSocket: a connection that stays
        open; exec: exit code 0)."""
        if isinstance(how, list):
            return self._run_probe_command(name, how)
        if how.startswith("tcp://"):
            host, port = how.removeprefix("tcp://").rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=timeout) as s:
                    s.settimeout(0.2)  # a forward to a closed pod port resets at once
                    with contextlib.suppress(TimeoutError, socket.timeout):
                        if s.recv(1, socket.MSG_PEEK) == b"":
                            return f"{name}: {how} closed"
                return None
            except OSError as exc:
                return f"{name}: {how} -> {exc!r}"
        try:
            with urllib.request.urlopen(how, timeout=timeout) as resp:  # noqa: S310 - this machine only
                return None if 200 <= resp.status < 400 else f"{name}: {how} -> {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"{name}: {how} -> {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{name}: {how} -> {exc!r}"

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every container's readiness probe passes (httpGet, tcpSocket, or exec where the pod
        runs it). Containers without a probe must merely stay running; the serving container is always
        checked, on its probe or else on `/v2/health/ready`. Raises PodError as soon as check_running does
        (e.g. an argparse error, exit code 2), or with every container's log tail after `timeout`."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pending: dict[str, str | list[str]] = {}
        for c in self.containers.values():
            how = self.probe_target(c, c.spec.get("readinessProbe") or {}) or self._exec_probe(c)
            if how:
                pending[c.name] = how
        serving = self.serving_container
        pending.setdefault(serving, f"http://{self._port_address(serving, 'http')}/v2/health/ready")
        last = ""
        while True:
            self.check_running()
            for name, how in list(pending.items()):
                why = self.probe_once(name, how)
                if why is None:
                    pending.pop(name)
                else:
                    last = why
            if not pending:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n} log tail ---\n{self.logs(n, 2000)}" for n in self.containers)
                raise PodError(f"{self.runtime} not ready after {timeout:.0f}s ({last})\n{tails}")
            time.sleep(self.probe_interval_s)
