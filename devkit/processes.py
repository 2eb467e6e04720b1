"""Starting and stopping real server processes on loopback, for tests, benchmarks and `make` targets.

Every process starts in its own session (process group) and is stopped by group, so nothing it spawned
outlives it, even when a test fails half-way. Ports come from `devkit.ports` (reserved, outside the ephemeral
range); a server that still finds its port taken raises `PortInUse`, and `start_with_retries` tries new ports.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .ports import address_in_use, reserve_port, reserve_ports


def die_with_parent() -> None:
    """In the child between fork and exec: get SIGTERM when the starting process dies, even by SIGKILL (a test
    killed by pytest-timeout must not leave its servers running)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        pass


class PortInUse(RuntimeError):
    """The server exited because a port it was given was taken after all."""


def free_port() -> int:
    """A reserved loopback port (see devkit.ports); kept under this name for existing callers."""
    return reserve_port()


def start_with_retries(start: Callable[[list[int]], object], port_count: int, attempts: int = 3):
    """start(ports) with `port_count` reserved ports; on PortInUse, again with new ports (the old ones stay held,
    so they are not handed out again in this process)."""
    for attempt in range(1, attempts + 1):
        ports = reserve_ports(port_count)
        try:
            return start(ports)
        except PortInUse:
            if attempt == attempts:
                raise


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


class ServerProcess:
    """A server command run in its own process group, with its output kept in a log file."""

    def __init__(self, command: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.command = command
        self.cwd = cwd
        self.log_path = Path(log_path)
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> "ServerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                        cwd=self.cwd, start_new_session=True, preexec_fn=die_with_parent)
        log.close()
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_http(self, url: str, timeout: float = 120.0, expect: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                error = PortInUse if address_in_use(tail) else RuntimeError
                raise error(f"{self.command[:4]} exited with {self.process.returncode}:\n{tail}")
            if http_status(url) == expect:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{url} not {expect} after {timeout}s:\n{self.log_tail()}")

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal(signal.SIGKILL)  # whatever is left of the group
        try:
            return self.process.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "ServerProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def huggingface_command(model_dir: Path, model_name: str, http_port: int, grpc_port: int, *extra: str) -> list[str]:
    """The kserve-huggingface runtime on loopback."""
    return [sys.executable, "-m", "hfserve.huggingface", "--model_name", model_name, "--model_dir", str(model_dir),
            "--bind_address", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port), *extra]
