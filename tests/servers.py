"""Starting the project's servers for tests: reserved loopback ports, a log per server, all stopped at the end.

Runtime-1 servers are shared by every module that serves the same checkpoint with the same arguments (the served
name does not matter: tests read `.model_name`), and each is stopped once the last module using it has finished.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hfserve.triton.local_server import find_triton
from hfserve.triton.repository import build_repository
from hfserve.triton.supervisor import TritonProcess, group_pids, shm_segments

from devkit.processes import ServerProcess, free_port, http_status, start_with_retries


class RunningServer:
    def __init__(self, server: ServerProcess, http_port: int, grpc_port: int, model_name: str):
        self.server = server
        self.url = f"http://127.0.0.1:{http_port}"
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        self.model_name = model_name


class ServerStarter:
    """start(module, model_dir, model_name, *args) runs `python -m module` on loopback and waits for `ready_path`."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[ServerProcess] = []

    def start(self, module: str, model_dir: Path, model_name: str, *args: str,
              ready_path: str = "/v2/health/live", timeout: float = 180, env: dict | None = None) -> RunningServer:
        def start_on(ports: list[int]) -> RunningServer:
            http_port, grpc_port = ports
            command = [sys.executable, "-m", module, "--model_name", model_name, "--model_dir", str(model_dir),
                       "--bind_address", "127.0.0.1", "--http_port", str(http_port), "--grpc_port", str(grpc_port),
                       *args]
            server = ServerProcess(command, self.logs / f"{model_name}-{http_port}.log", env=env)
            self.started.append(server)
            server.start()
            server.wait_http(f"http://127.0.0.1:{http_port}{ready_path.format(model=model_name)}", timeout=timeout)
            return RunningServer(server, http_port, grpc_port, model_name)

        return start_with_retries(start_on, 2)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


# A checkpoint is "minilm" (the packaged all-MiniLM-L6-v2) or a kind of devkit.tiny_models.
ServerKey = tuple[str, tuple[str, ...]]


class ServerUsers:
    """Which tests use which shared server, so that a server stops when its last user has finished.

    Users come from collection (each test whose fixtures include one made by `served`, or a fixture naming its
    stack) and from calls made while a module runs (a server a module's own fixture or test starts: that whole
    module is a user). A server asked for again after it was stopped is simply started again."""

    def __init__(self):
        self.declared: dict[ServerKey, set[str]] = {}  # key -> test node ids and module paths
        self.pending: set[str] = set()  # tests not yet torn down
        self.remaining: dict[str, int] = {}  # module -> its tests not yet torn down
        self.current: str | None = None
        self.listeners: list = []  # called after each test's teardown

    def declare(self, key: ServerKey, user: str) -> None:
        self.declared.setdefault(key, set()).add(user)

    def collected(self, items) -> None:
        """The selected items (after -m/-k): a fixture's function declares its server as `shared_key`, or
        the servers an item may ask it for as `shared_keys_for(item)`."""
        self.declared.clear()
        self.remaining.clear()
        self.pending = {item.nodeid for item in items}
        for item in items:
            module = module_of(item)
            self.remaining[module] = self.remaining.get(module, 0) + 1
            for definitions in getattr(item, "_fixtureinfo").name2fixturedefs.values():
                func = definitions[-1].func
                if hasattr(func, "shared_key"):
                    self.declare(func.shared_key, item.nodeid)
                for key in getattr(func, "shared_keys_for", lambda _: ())(item):
                    self.declare(key, item.nodeid)

    def used(self, key: ServerKey) -> None:
        if self.current is not None:
            self.declare(key, self.current)

    def torn_down(self, item) -> None:
        self.pending.discard(item.nodeid)
        if module_of(item) in self.remaining:
            self.remaining[module_of(item)] -= 1

    def still_needed(self, key: ServerKey) -> bool:
        return any(user in self.pending or self.remaining.get(user, 0) > 0 for user in self.declared.get(key, ()))


USERS = ServerUsers()


def module_of(item) -> str:
    return item.nodeid.split("::")[0]


class SharedRuntime1:
    """The session's runtime-1 servers by (checkpoint, arguments); see ServerUsers for when each stops."""

    def __init__(self, starter: ServerStarter, checkpoint_of):
        self.starter = starter
        self.checkpoint_of = checkpoint_of  # model_dir -> "minilm", a tiny kind, or the directory itself
        self.running: dict[ServerKey, RunningServer] = {}

    def start(self, model_dir: Path, model_name: str, *extra: str) -> RunningServer:
        key = (self.checkpoint_of(Path(model_dir)), tuple(extra))
        USERS.used(key)
        if key not in self.running or self.running[key].server.process.poll() is not None:
            self.running[key] = self.starter.start("hfserve.huggingface", model_dir, model_name, *extra,
                                                   ready_path="/v2/models/{model}/ready", env=NO_DRAIN_DELAY)
        return self.running[key]

    def stop_unneeded(self) -> None:
        for key in [k for k in self.running if not USERS.still_needed(k)]:
            server = self.running.pop(key).server
            server.stop()
            self.starter.started.remove(server)  # signalled once: its group id may be reused afterwards

    def stop_all(self) -> None:
        self.running.clear()
        self.starter.stop_all()


def served(checkpoint: str, model_name: str, *args: str):
    """A module-scoped fixture: runtime 1 serving `checkpoint` ("minilm" or a tiny kind) with `args`; shared with
    every other module that asks for the same checkpoint and arguments (see ServerUsers)."""

    def runtime(start_huggingface_runtime, tiny_models, minilm_dir):
        model_dir = minilm_dir if checkpoint == "minilm" else tiny_models(checkpoint)
        return start_huggingface_runtime(model_dir, model_name, *args)

    runtime.shared_key = (checkpoint, tuple(args))  # read from the fixture's function at collection
    return pytest.fixture(scope="module")(runtime)


# Shared servers are stopped without the drain delay (5 s each by default); the drain tests start their own.
NO_DRAIN_DELAY = {"HFSERVE_DRAIN_DELAY_S": "0"}

# ---- Triton --------------------------------------------------------------------------------------------------

def child_pids(pid: int) -> list[int]:
    children = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            children += [int(p) for p in Path(path).read_text().split()]
        except OSError:
            pass
    return children


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_group(pgid: int | None) -> None:
    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class LaunchedTriton:
    """`python -m hfserve.triton` on loopback, plus what it started."""

    def __init__(self, model_dir: Path, model_name: str, workdir: Path, *extra: str,
                 ports: tuple[int, int, int] | None = None, env: dict | None = None):
        self.model_name = model_name
        self.env = env
        self.http_port, self.grpc_port, self.metrics_port = ports or (free_port(), free_port(), free_port())
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.workdir = Path(workdir)
        self.command = [
            sys.executable, "-m", "hfserve.triton", "--model_name", model_name, "--model_dir", str(model_dir),
            "--repository_dir", str(self.workdir / "repository"), "--bind_address", "127.0.0.1",
            "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port),
            "--metrics_port", str(self.metrics_port), *extra]
        self.server: ServerProcess | None = None
        self.triton_pid: int | None = None
        self.started_at = 0.0
        self.ready_after_s: float | None = None
        self.starts = 0

    def start(self, timeout: float = 300.0) -> "LaunchedTriton":  # start-up on 2 loaded cores: minutes
        self.starts += 1
        self.server = ServerProcess(self.command, self.workdir / f"launcher-{self.starts}.log", env=self.env)
        self.started_at = time.monotonic()
        self.server.start()
        self.wait_ready(timeout)
        self.ready_after_s = time.monotonic() - self.started_at
        return self

    @property
    def pid(self) -> int:
        return self.server.pid

    def wait_ready(self, timeout: float) -> None:
        self.server.wait_http(f"{self.http_url}/v2/models/{self.model_name}/ready", timeout=timeout)
        for _ in range(50):
            tritons = [p for p in child_pids(self.pid) if process_name(p) == "tritonserver"]
            if tritons:
                self.triton_pid = tritons[0]
                return
            time.sleep(0.1)
        raise RuntimeError("no tritonserver child found")

    def triton_ready(self) -> bool:
        return http_status(f"{self.http_url}/v2/models/{self.model_name}/ready", timeout=0.5) == 200

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self) -> str:
        return self.server.log_tail(60) if self.server else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout=40)
        kill_group(self.triton_pid)


class MiniLMTritonStack:
    """The packaged MiniLM on runtime 2 as the chart runs it: the launcher with the chart's batching defaults
    (max_batch_size 32, preferred 8/16/32, 500 us queue delay, the default token bound), and the transformer.
    One per session, for tests that do not stop, kill or reconfigure it (those start their own)."""

    model_name = "minilm"

    def __init__(self, model_dir: Path, workdir: Path):
        self.export = workdir / "exported-tokenizer"
        self.triton = LaunchedTriton(model_dir, self.model_name, workdir, "--tokenizer_export_dir", str(self.export),
                                     env=NO_DRAIN_DELAY)
        self.transformers = ServerStarter(workdir / "transformer-logs")
        self.transformer: RunningServer | None = None

    def start(self) -> "MiniLMTritonStack":
        self.triton.start(timeout=300)  # loading the Python backend on 2 busy cores: minutes
        self.transformer = self.transformers.start("hfserve.transformer", self.export, self.model_name,
                                                   "--predictor_host", self.triton.grpc_target,
                                                   "--triton_metrics_url",
                                                   f"http://127.0.0.1:{self.triton.metrics_port}/metrics",
                                                   ready_path="/v2/models/{model}/ready", timeout=120,
                                                   env=NO_DRAIN_DELAY)
        return self

    def stop(self) -> None:
        self.transformers.stop_all()
        self.triton.stop()


class TinyTriton:
    """One tritonserver serving every tiny encoder checkpoint the tests use on Triton (model name = kind):
    test_triton_tasks calls the models over gRPC; tests/reference puts a transformer in front of each.
    max_batch_size 8 with a 100 ms queue delay, so that requests sent together are batched and large ones split."""

    KINDS = ("text_embedding", "text_embedding_cls", "text_embedding_max", "sequence_classification",
             "multi_label_classification", "token_classification", "fill_mask")
    START_S = 600  # every model's stub imports torch before Triton opens its ports: minutes on 2 loaded cores

    def __init__(self, models: dict[str, Path], workdir: Path):
        self.models = models
        self.workdir = workdir
        self.process: TritonProcess | None = None
        self.failed = ""

    def start(self) -> "TinyTriton":
        if self.failed:
            pytest.fail(f"the tiny models' tritonserver did not start: {self.failed}")
        repository = self.workdir / "repository"
        for kind, model_dir in self.models.items():
            build_repository(model_dir, repository, kind, device="cpu", max_batch_size=8, preferred_batch_sizes=[8],
                             max_queue_delay_us=100000)
        install = find_triton()
        http, grpc, metrics = free_port(), free_port(), free_port()
        self.http, self.grpc = f"http://127.0.0.1:{http}", f"127.0.0.1:{grpc}"
        self.shm_prefix, token = TritonProcess.new_identity()
        command = [str(install.binary), f"--model-repository={repository}",
                   f"--backend-directory={install.backend_dir}", "--disable-auto-complete-config",
                   "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                   f"--http-port={http}", f"--grpc-port={grpc}", f"--metrics-port={metrics}",
                   "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",
                   f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}", "--exit-timeout-secs=30"]
        self.process = TritonProcess(command, install.env, self.http, self.KINDS[0], self.shm_prefix, token, 30)
        self.process.start()
        deadline = time.monotonic() + self.START_S
        while not all(http_status(f"{self.http}/v2/models/{k}/ready") == 200 for k in self.models):
            if self.process.poll() is not None:
                self.failed = "tritonserver exited during start-up"
            elif time.monotonic() > deadline:
                self.failed = f"the tiny models were not ready after {self.START_S} s"
            if self.failed:
                pytest.fail(self.failed)
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()  # SIGKILL of the whole group, then removal of its shared memory
            assert not group_pids(self.process.pid) and not shm_segments(self.shm_prefix)
            self.process = None


class SharedStacks:
    """Session-wide stacks started on first use and stopped when the last module declared to use them is done
    (a fixture's function names its stack as `shared_key`, as `served` does for runtime-1 servers)."""

    def __init__(self, factories: dict):
        self.factories = factories  # key -> () -> a stack with start() and stop()
        self.running: dict = {}
        self.failed: dict = {}

    def get(self, key):
        USERS.used(key)
        if key in self.failed:  # one slow failed start, not one per test
            pytest.fail(f"{key} did not start: {self.failed[key]}")
        if key not in self.running:
            stack = self.factories[key]()
            try:
                stack.start()
            except BaseException as error:
                stack.stop()
                self.failed[key] = repr(error)[:2000]
                raise
            self.running[key] = stack
        return self.running[key]

    def stop_unneeded(self) -> None:
        for key in [k for k in self.running if not USERS.still_needed(k)]:
            self.running.pop(key).stop()

    def stop_all(self) -> None:
        while self.running:
            self.running.popitem()[1].stop()


MINILM_TRITON = ("triton", "minilm")
TINY_TRITON = ("triton", "tiny")
