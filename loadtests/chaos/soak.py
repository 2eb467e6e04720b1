"""The soak: the chart's Triton pod under steady load while the scheduled faults hit it, then the verdict."""

from __future__ import annotations

import glob
import json
import random
import threading
import time
from dataclasses import asdict
from pathlib import Path

import httpx

from conformance.pods.base import PodError
from conformance.pods.process import EmulatedPod
from devkit.ports import address_in_use
from loadtests.chaos.faults import Kubelet, Processes, inject, schedule
from loadtests.chaos.judge import REQUEST_TIMEOUT_S, SERVED_BETWEEN, WARMUP_S, Fault, Run, judge, served_after
from loadtests.chaos.load import MODEL, load_worker
from loadtests.chaos.plot import plot

RUNTIME = "kserve-huggingface-triton"
RECOVERY_LIMIT_S = 300.0  # Triton restarts build the repository and load the model: slow on 2 loaded cores
READY_TIMEOUT_S = 600.0
DRAIN_DELAY_S = 2         # the chart's drainDelaySeconds here (5 s by default in raw mode): faults come often


def start_pod(model_dir: str, work_dir: Path, attempts: int = 3) -> EmulatedPod:
    for attempt in range(1, attempts + 1):
        pod = EmulatedPod.start(RUNTIME, model_dir=model_dir, model_name=MODEL, work_dir=work_dir,
                                values={"drainDelaySeconds": DRAIN_DELAY_S})
        try:
            pod.wait_ready(READY_TIMEOUT_S)
            return pod
        except PodError as exc:
            pod.stop()
            if attempt == attempts or not address_in_use(str(exc)):
                raise  # else a port was taken by a program outside our reservations: a new pod, new ports
        except BaseException:
            pod.stop()
            raise
    raise AssertionError("unreachable")


def serves(url: str) -> bool:
    try:
        return httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": ["probe"]},
                          timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def sample(processes: Processes, run: Run, stop: threading.Event) -> None:
    while not stop.is_set():
        now = time.monotonic()
        for p in processes.all():
            try:
                run.samples.append({"t": now, "pid": p.pid, "role": processes.roles.get(p.pid, "other"),
                                    "rss": p.memory_info().rss, "fds": p.num_fds()})
            except Exception:  # noqa: BLE001 - the process went away meanwhile
                pass
        stop.wait(2.0)


def wait_served(run: Run, fault: Fault, limit_s: float) -> None:
    """Until the service answered SERVED_BETWEEN requests 200 outside the fault windows since `fault` (the next
    fault waits for them, so that every recovery is shown to serve, however slow this machine is)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with run.lock:
            if served_after(fault, run, float("inf")) >= SERVED_BETWEEN:
                return
        time.sleep(0.5)


def soak(minutes: float, seed: int, model_dir: str, out: Path, users: int = 4,
         recovery_limit_s: float = RECOVERY_LIMIT_S) -> dict:
    """`minutes` of load with faults, and longer until every kind of fault happened once."""
    out.mkdir(parents=True, exist_ok=True)
    run = Run()
    rng = random.Random(seed)
    pod = start_pod(model_dir, out)
    lock = threading.Lock()
    processes = Processes(pod)
    kubelet = Kubelet(pod, lock).start()
    stop = threading.Event()
    t0 = time.monotonic()
    threads = [threading.Thread(target=load_worker, args=(pod.http_url, run, stop, seed * 100 + i), daemon=True)
               for i in range(users)]
    threads.append(threading.Thread(target=sample, args=(processes, run, stop), daemon=True))
    recoveries: list[float] = []
    faults = schedule(seed, rounds=max(1, int(minutes) + 1))
    try:
        for t in threads:
            t.start()
        end_at = t0 + WARMUP_S + minutes * 60
        time.sleep(WARMUP_S)
        for i, kind in enumerate(faults):
            if run.faults:
                wait_served(run, run.faults[-1], recovery_limit_s)
            first_round_done = i >= len(set(faults))
            if first_round_done and time.monotonic() >= end_at:
                break
            time.sleep(rng.uniform(5, 15))
            processes.all()
            fault = Fault(kind, time.monotonic())
            run.faults.append(fault)
            fault.detail = inject(pod, processes, kind, run, lock)
            if kind != "bad_inputs":
                time.sleep(1.0)  # let the fault take hold before probing for recovery
            while not serves(pod.http_url) and time.monotonic() - fault.start < recovery_limit_s:
                time.sleep(0.5)
            fault.end = time.monotonic()
            recoveries.append(fault.end - fault.start)
            print(f"chaos: {kind} ({fault.detail}): service back after {fault.end - fault.start:.1f} s", flush=True)
        if run.faults:
            wait_served(run, run.faults[-1], recovery_limit_s)
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S + 5)
        processes.all()
        kubelet.stop()
        for name in pod.container_names:  # the pod's work directory goes with it
            (out / f"{name}.log").write_text(pod.logs(name, tail=None))
        pod.stop(grace=30)
    launchers = [pid for pid, role in processes.roles.items() if role == "launcher"]
    # the launcher names its Triton's segments after its own pid (hfserve.triton.supervisor.TritonProcess)
    left_shm = [s for pid in launchers for s in glob.glob(f"/dev/shm/hfserve_triton_{pid}_*")]
    summary = judge(run, t0, recoveries, processes.left(), left_shm, seed, minutes, recovery_limit_s)
    summary["restarts"] = kubelet.restarts
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "outcomes.json").write_text(json.dumps({"t0": t0, "outcomes": [asdict(o) for o in run.outcomes],
                                                   "faults": [asdict(f) for f in run.faults]}) + "\n")
    plot(run, t0, out / "timeline.png", summary)
    return summary
