"""The soak's faults, injected into the chart's Triton pod, and the kubelet that restarts its containers.

The schedule is fixed by the seed and covers every kind: rounds of FAULTS, each round in a seeded order.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import psutil

from conformance.pods.process import EmulatedPod
from devkit.triton_pair import KubeletBackoff
from loadtests.chaos.judge import FAULTS, Run
from loadtests.chaos.load import BAD_INPUTS, send_bad_inputs

TERM_EXIT_LIMIT_S = 60.0  # drain delay + graceful shutdown of a SIGTERMed container
# kind -> (container, process role inside it or None for the container's main process, signal)
TARGETS = {"kill_triton": ("triton", "tritonserver", signal.SIGKILL), "kill_stub": ("triton", "stub", signal.SIGKILL),
           "kill_transformer": ("transformer", None, signal.SIGKILL),
           "term_triton": ("triton", None, signal.SIGTERM), "term_transformer": ("transformer", None, signal.SIGTERM)}


def schedule(seed: int, rounds: int = 1) -> list[str]:
    """The order of the faults: `rounds` rounds, each every kind once, shuffled by the seed."""
    rng = random.Random(seed)
    order: list[str] = []
    for _ in range(rounds):
        kinds = list(FAULTS)
        rng.shuffle(kinds)
        order += kinds
    return order


def role_of(p: psutil.Process) -> str:
    try:
        name, cmd = p.name(), " ".join(p.cmdline())
    except psutil.Error:
        return "gone"
    if name == "tritonserver":
        return "tritonserver"
    if name.startswith("triton_python"):
        return "stub"
    if "-m hfserve.transformer" in cmd:
        return "transformer"
    if "-m hfserve.triton " in cmd + " ":
        return "launcher"
    return "other"  # e.g. the repository builder the launcher runs at start-up


class Processes:
    """Every process of the pod's containers, and every one ever seen (pid -> start time) for the leftover check."""

    def __init__(self, pod: EmulatedPod):
        self.pod = pod
        self.seen: dict[int, float] = {}
        self.roles: dict[int, str] = {}

    def of(self, container: str) -> list[psutil.Process]:
        found = []
        for pid in self.pod.pids(container):
            try:
                p = psutil.Process(pid)
                self.seen.setdefault(pid, p.create_time())
                found.append(p)
            except psutil.Error:
                pass
        return found

    def all(self) -> list[psutil.Process]:
        found = [p for name in self.pod.container_names for p in self.of(name)]
        for p in found:
            role = role_of(p)
            if role not in ("gone", "other"):
                self.roles[p.pid] = role
        return found

    def left(self) -> list[int]:
        alive = []
        for pid, created in self.seen.items():
            try:
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                pass
        return alive


class Kubelet:
    """Restarts a container of the pod whose main process exited, after the kubelet's back-off (short here),
    once what was left of it is killed, as restart policy Always does."""

    def __init__(self, pod: EmulatedPod, lock: threading.Lock, backoff_s: float = 1.0, most_s: float = 4.0,
                 reset_after_s: float = 60.0):
        self.pod, self.lock = pod, lock
        self.backoffs = {n: KubeletBackoff(backoff_s, most_s, reset_after_s) for n in pod.container_names}
        self.started = {n: time.monotonic() for n in pod.container_names}
        self.restarts = {n: 0 for n in pod.container_names}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="kubelet")

    def start(self) -> Kubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        due: dict[str, float] = {}
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for name in self.pod.container_names:
                with self.lock:
                    if name not in due and self.pod.returncode(name) is not None:
                        code = self.pod.returncode(name)
                        self.pod.kill(name, signal.SIGKILL)  # what is left of the container goes with it
                        delay = self.backoffs[name].delay(now - self.started[name])
                        due[name] = now + delay
                        print(f"chaos: {name} exited ({code}); restarting it in {delay:.0f} s", flush=True)
                    elif name in due and now >= due[name]:
                        del due[name]
                        self.pod.restart(name)
                        self.started[name] = time.monotonic()
                        self.restarts[name] += 1


def _wait_exit(pod: EmulatedPod, container: str, pid: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if pod.returncode(container) is not None or pod.pid(container) != pid:
            return
        time.sleep(0.1)


def inject(pod: EmulatedPod, processes: Processes, kind: str, run: Run, lock: threading.Lock) -> str:
    """Inject one fault; returns what was done."""
    if kind == "bad_inputs":
        send_bad_inputs(pod.http_url, run)
        return f"{len(BAD_INPUTS) * 3} bad requests"
    container, role, sig = TARGETS[kind]
    with lock:
        if pod.returncode(container) is not None:
            return f"{container} is not running"
        main = pod.pid(container)
        if role is not None:  # one process inside the container: a crash, the OOM killer
            victim = next((p for p in processes.of(container) if role_of(p) == role), None)
            if victim is None:
                return f"no {role} process found in {container}"
            victim.send_signal(sig)
            return f"{signal.Signals(sig).name} -> {role} pid {victim.pid}"
        pod.kill(container, sig, wait=0)
    if sig == signal.SIGTERM:
        # A terminated container drains first (it still answers for its drain delay), so a probe could succeed
        # before it is gone; the fault lasts until it has exited and its restart serves.
        _wait_exit(pod, container, main, TERM_EXIT_LIMIT_S)
    return f"{signal.Signals(sig).name} -> {container} pid {main}"
