"""`make chaos`: a bounded fault-injection soak against the kserve-huggingface-triton runtime pair.

    python -m loadtests.chaos [--minutes 5] [--seed 11] [--out reports/chaos] [--model_dir DIR]

The "pod" is `python -m devkit.triton_pair` (the transformer and the Triton launcher, restarted like a
kubelet does, with a short back-off here). Steady load mixes V1, V2 and OpenAI embeddings requests of varied
lengths; faults come at random intervals from a fixed seed: SIGKILL of tritonserver, of a Python-backend stub, of
the transformer; SIGTERM (and the restart that follows) of either side; a burst of bad inputs. Every request's
outcome and time and every fault's window are recorded.

Asserted (exit status 1 otherwise; reports/chaos/summary.json says which):
- every answer is 200, a 4xx JSON error for the bad inputs, or a 503 with a JSON body;
- every 503 and every refused connection falls inside a fault window (plus GRACE_S);
- no request hangs past its timeout; service returns within RECOVERY_LIMIT_S of each fault;
- afterwards no process of the pod is left and no /dev/shm segment of its Triton;
- RSS of each process that lived through the run within +10% of its value after warm-up; open fds flat.
A PNG timeline (requests/s, errors, latency, faults shaded) goes beside the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import random
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "serving_code"))

from devkit.processes import ServerProcess, start_with_retries  # noqa: E402

MODEL = "minilm"
GRACE_S = 5.0             # a 503 this soon after a fault window closes still counts as inside it
RECOVERY_LIMIT_S = 300.0  # Triton restarts build the repository and load the model: slow on 2 loaded cores
REQUEST_TIMEOUT_S = 60.0
WARMUP_S = 20.0
RSS_GROWTH = 0.10
TERM_EXIT_LIMIT_S = 60.0  # drain delay + graceful shutdown of a SIGTERMed process
FD_SLACK = 8
FAULTS = ("kill_triton", "kill_stub", "kill_transformer", "term_triton", "term_transformer", "bad_inputs")
WORDS = "serving models on kubernetes with batching tokenizers triton transformers and load".split()


@dataclass
class Outcome:
    start: float
    end: float
    protocol: str
    status: int | None      # None: no HTTP answer
    error: str = ""         # exception name when status is None
    json_error: bool = False
    bad_input: bool = False


@dataclass
class Fault:
    kind: str
    start: float
    end: float | None = None
    detail: str = ""


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)   # time, pid, role, rss, fds
    lock: threading.Lock = field(default_factory=threading.Lock)


def request_for(rng: random.Random, protocol: str) -> tuple[str, dict]:
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.choice((3, 12, 40, 120)))) for _ in range(rng.randint(1, 4))]
    if protocol == "v1":
        return f"/v1/models/{MODEL}:predict", {"instances": texts}
    if protocol == "v2":
        return f"/v2/models/{MODEL}/infer", {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                                          "data": texts}]}
    return "/openai/v1/embeddings", {"model": MODEL, "input": texts}


BAD_INPUTS = [
    (f"/v1/models/{MODEL}:predict", b"{not json"),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": "not a list"}).encode()),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": [1, 2, 3]}).encode()),
    (f"/v1/models/{MODEL}:predict", json.dumps({"instances": ["x"] * 1000}).encode()),
    (f"/v2/models/{MODEL}/infer", json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32",
                                                          "data": [1.0]}]}).encode()),
    ("/openai/v1/embeddings", json.dumps({"model": MODEL, "input": []}).encode()),
    ("/openai/v1/embeddings", json.dumps({"model": MODEL}).encode()),
]


def classify(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, str) or (isinstance(error, dict) and isinstance(error.get("message"), str))


def load_worker(url: str, run: Run, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        while not stop.is_set():
            protocol = rng.choice(("v1", "v2", "openai"))
            path, body = request_for(rng, protocol)
            start = time.monotonic()
            try:
                response = http.post(path, json=body)
                outcome = Outcome(start, time.monotonic(), protocol, response.status_code,
                                  json_error=response.status_code != 200 and classify(response))
                if response.status_code != 200:
                    time.sleep(0.05)  # a client backs off a little on errors (a 503 comes back at once)
            except httpx.HTTPError as exc:
                outcome = Outcome(start, time.monotonic(), protocol, None, type(exc).__name__)
                time.sleep(0.2)
            with run.lock:
                run.outcomes.append(outcome)


def send_bad_inputs(url: str, run: Run) -> None:
    with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        for path, body in BAD_INPUTS * 3:
            start = time.monotonic()
            try:
                r = http.post(path, content=body, headers={"content-type": "application/json"})
                outcome = Outcome(start, time.monotonic(), "bad", r.status_code, json_error=classify(r), bad_input=True)
            except httpx.HTTPError as exc:
                outcome = Outcome(start, time.monotonic(), "bad", None, type(exc).__name__, bad_input=True)
            with run.lock:
                run.outcomes.append(outcome)


class Pod:
    """dev_serve and what it started, found by command line."""

    def __init__(self, server: ServerProcess, url: str):
        self.server, self.url = server, url
        self.seen: dict[int, float] = {}

    def processes(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.server.pid).children(recursive=True)
        except psutil.Error:
            return []
        for p in found:
            self.seen.setdefault(p.pid, _created(p))
        return found

    def find(self, role: str) -> psutil.Process | None:
        for p in self.processes():
            if role_of(p) == role:
                return p
        return None

    def ready(self) -> bool:
        try:
            return httpx.post(f"{self.url}/v1/models/{MODEL}:predict", json={"instances": ["probe"]},
                              timeout=10).status_code == 200
        except httpx.HTTPError:
            return False


def _created(p: psutil.Process) -> float:
    try:
        return p.create_time()
    except psutil.Error:
        return 0.0


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


def inject(pod: Pod, kind: str, run: Run) -> str:
    targets = {"kill_triton": ("tritonserver", signal.SIGKILL), "kill_stub": ("stub", signal.SIGKILL),
               "kill_transformer": ("transformer", signal.SIGKILL), "term_triton": ("launcher", signal.SIGTERM),
               "term_transformer": ("transformer", signal.SIGTERM)}
    if kind == "bad_inputs":
        send_bad_inputs(pod.url, run)
        return f"{len(BAD_INPUTS) * 3} bad requests"
    role, sig = targets[kind]
    process = pod.find(role)
    if process is None:
        return f"no {role} process found"
    process.send_signal(sig)
    if sig == signal.SIGTERM:
        # A terminated container drains first (it still answers for its drain delay), so a probe could succeed
        # before it is gone; the fault lasts until it has exited and its restart serves.
        with contextlib.suppress(psutil.Error):
            process.wait(timeout=TERM_EXIT_LIMIT_S)
    return f"{signal.Signals(sig).name} -> {role} pid {process.pid}"


def sample(pod: Pod, run: Run, stop: threading.Event) -> None:
    while not stop.is_set():
        now = time.monotonic()
        for p in pod.processes():
            try:
                run.samples.append({"t": now, "pid": p.pid, "role": role_of(p), "rss": p.memory_info().rss,
                                    "fds": p.num_fds()})
            except psutil.Error:
                pass
        stop.wait(2.0)


def start_pod(model_dir: str, log: Path) -> Pod:
    def start_on(ports: list[int]) -> Pod:
        http, grpc, t_http, t_grpc, t_metrics = ports
        command = [sys.executable, "-m", "devkit.triton_pair", "--model_name", MODEL, "--model_dir", model_dir,
                   "--port", str(http), "--grpc_port", str(grpc), "--triton_http_port", str(t_http),
                   "--triton_grpc_port", str(t_grpc), "--triton_metrics_port", str(t_metrics),
                   "--restart_backoff_s", "1", "--restart_backoff_max_s", "4", "--restart_reset_after_s", "60",
                   "--transformer_arg=--drain_delay_s=2", "--drain_delay_s", "2"]
        server = ServerProcess(command, log)
        server.start()
        try:
            server.wait_http(f"http://127.0.0.1:{http}/v2/health/ready", timeout=600)
        except BaseException:
            server.stop(timeout=60)
            raise
        return Pod(server, f"http://127.0.0.1:{http}")

    return start_with_retries(start_on, 5)


def soak(minutes: float, seed: int, model_dir: str, out: Path, users: int = 4,
         recovery_limit_s: float = RECOVERY_LIMIT_S) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run = Run()
    rng = random.Random(seed)
    pod = start_pod(model_dir, out / "pod.log")
    stop = threading.Event()
    t0 = time.monotonic()
    threads = [threading.Thread(target=load_worker, args=(pod.url, run, stop, seed * 100 + i), daemon=True)
               for i in range(users)]
    threads.append(threading.Thread(target=sample, args=(pod, run, stop), daemon=True))
    leftovers_known: dict[int, float] = {}
    recoveries: list[float] = []
    try:
        for t in threads:
            t.start()
        end_at = t0 + WARMUP_S + minutes * 60
        time.sleep(WARMUP_S)
        while time.monotonic() < end_at:
            time.sleep(min(rng.uniform(5, 15), max(0.0, end_at - time.monotonic())))
            if time.monotonic() >= end_at:
                break
            kind = rng.choice(FAULTS)
            pod.processes()
            fault = Fault(kind, time.monotonic())
            run.faults.append(fault)
            fault.detail = inject(pod, kind, run)
            if kind != "bad_inputs":
                time.sleep(1.0)  # let the fault take hold before probing for recovery
            while not pod.ready() and time.monotonic() - fault.start < recovery_limit_s:
                time.sleep(0.5)
            fault.end = time.monotonic()
            recoveries.append(fault.end - fault.start)
            print(f"chaos: {kind} ({fault.detail}): service back after {fault.end - fault.start:.1f} s", flush=True)
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S + 5)
        pod.processes()
        leftovers_known = dict(pod.seen)
        pod.server.stop(timeout=90)
    summary = judge(run, t0, recoveries, leftovers_known, seed, minutes, recovery_limit_s)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "outcomes.json").write_text(json.dumps({"t0": t0, "outcomes": [asdict(o) for o in run.outcomes],
                                                   "faults": [asdict(f) for f in run.faults]}) + "\n")
    plot(run, t0, out / "timeline.png", summary)
    return summary


def in_window(t: float, faults: list[Fault]) -> bool:
    return any(f.start - 0.5 <= t <= (f.end or f.start) + GRACE_S for f in faults if f.kind != "bad_inputs")


def killed_with_server(o: Outcome, faults: list[Fault]) -> bool:
    return any(f.kind == "kill_transformer" and o.start <= f.start <= o.end <= f.start + 2.0 for f in faults)


def judge(run: Run, t0: float, recoveries: list[float], known: dict[int, float], seed: int, minutes: float,
          recovery_limit_s: float) -> dict:
    problems: list[str] = []
    load = [o for o in run.outcomes if not o.bad_input]
    bad = [o for o in run.outcomes if o.bad_input]
    lost = killed_in_flight = 0
    for o in load:
        why = None
        if o.status == 200:
            continue
        if o.error in ("RemoteProtocolError", "ReadError") and killed_with_server(o, run.faults):
            killed_in_flight += 1  # SIGKILL of the serving process: no server can answer those (reported apart)
            continue
        if o.status == 503 and o.json_error or o.status is None and o.error == "ConnectError":
            if not in_window(o.end, run.faults):
                why = f"{o.status or o.error} outside any fault window at +{o.end - t0:.1f} s"
        elif o.error in ("ReadTimeout", "PoolTimeout", "WriteTimeout", "ConnectTimeout"):
            why = f"request hung past {REQUEST_TIMEOUT_S:.0f} s at +{o.start - t0:.1f} s"
        else:  # another status, a 503 without JSON, a connection dropped mid-request
            why = f"{o.protocol} request -> {o.status or o.error} at +{o.end - t0:.1f} s"
        if why:
            lost += 1
            problems.append(why)
    for o in bad:
        if not (o.status is not None and (400 <= o.status < 500 and o.json_error or o.status == 503 and o.json_error)):
            problems.append(f"bad input -> {o.status or o.error} (json error: {o.json_error})")
    slow = [r for r in recoveries if r >= recovery_limit_s]
    if slow:
        problems.append(f"service did not return within {recovery_limit_s:.0f} s after {len(slow)} fault(s)")
    left = []
    for pid, created in known.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.Error:
            pass
    if left:
        problems.append(f"processes left after the run: {left}")
    shm = [s for pid in known for s in glob.glob(f"/dev/shm/hfserve_triton_{pid}_*")]
    if shm:
        problems.append(f"/dev/shm segments left: {shm}")
    memory = memory_report(run.samples, run.faults)
    problems += memory.pop("problems")
    return {
        "seed": seed, "minutes": minutes, "requests": len(load), "ok": sum(o.status == 200 for o in load),
        "answered_503": sum(o.status == 503 for o in load),
        "refused_or_dropped": sum(o.status is None for o in load),
        "lost": lost, "killed_in_flight_by_sigkill_of_the_transformer": killed_in_flight,
        "bad_inputs": len(bad), "faults": [asdict(f) | {"start": round(f.start - t0, 2),
                                                        "end": round((f.end or f.start) - t0, 2)} for f in run.faults],
        "fault_count": len(run.faults), "longest_recovery_s": round(max(recoveries, default=0.0), 1),
        "recovery_limit_s": recovery_limit_s,
        "memory": memory, "problems": problems[:50], "passed": not problems,
    }


def memory_report(samples: list[dict], faults: list[Fault]) -> dict:
    """Per process: RSS and open fds WARMUP_S after it started serving (after the fault window it was started in)
    vs at the end; judged for processes that served at least 30 s after that."""
    by_pid: dict[int, list[dict]] = {}
    for s in samples:
        by_pid.setdefault(s["pid"], []).append(s)
    report, problems = {}, []
    for pid, rows in by_pid.items():
        first, last = rows[0], rows[-1]
        if first["role"] in ("other", "gone"):
            continue
        serving_from = max([first["t"]] + [f.end for f in faults if f.end and f.start <= first["t"] <= f.end])
        warm = next((r for r in rows if r["t"] >= serving_from + WARMUP_S), None)
        if warm is None or last["t"] - warm["t"] < 30:
            continue
        growth = (last["rss"] - warm["rss"]) / max(1, warm["rss"])
        report[f"{first['role']}:{pid}"] = {"rss_after_warmup_mb": round(warm["rss"] / 2**20, 1),
                                            "rss_end_mb": round(last["rss"] / 2**20, 1),
                                            "growth": round(growth, 3), "fds_after_warmup": warm["fds"],
                                            "fds_end": last["fds"], "seconds": round(last["t"] - warm["t"], 1)}
        if growth > RSS_GROWTH:
            problems.append(f"{first['role']} pid {pid}: RSS grew {growth:.0%} after warm-up")
        if last["fds"] > warm["fds"] + FD_SLACK:
            problems.append(f"{first['role']} pid {pid}: open fds {warm['fds']} -> {last['fds']}")
    return {"processes": report, "problems": problems}


def plot(run: Run, t0: float, path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = sorted(run.outcomes, key=lambda o: o.end)
    end = max((o.end for o in outcomes), default=t0) - t0
    bins = max(1, int(end) + 1)
    ok, errors = [0] * bins, [0] * bins
    for o in outcomes:
        i = min(bins - 1, int(o.end - t0))
        (ok if o.status == 200 else errors)[i] += 1
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    top.plot(range(bins), ok, label="200 / s", color="tab:green")
    top.plot(range(bins), errors, label="503, 4xx, refused / s", color="tab:red")
    top.set_ylabel("requests per second")
    top.legend(loc="upper right")
    good = [o for o in outcomes if o.status == 200]
    bottom.scatter([o.end - t0 for o in good], [1000 * (o.end - o.start) for o in good], s=2, color="tab:blue")
    bottom.set_ylabel("latency of 200s (ms)")
    bottom.set_yscale("log")
    bottom.set_xlabel("seconds since start")
    for axis in (top, bottom):
        for f in run.faults:
            axis.axvspan(f.start - t0, (f.end or f.start) - t0 + 0.3, color="orange", alpha=0.25)
    for f in run.faults:
        top.text(f.start - t0, top.get_ylim()[1] * 0.92, f.kind, rotation=90, fontsize=7, va="top")
    fig.suptitle(f"chaos soak: {summary['requests']} requests, {summary['fault_count']} faults, "
                 f"{summary['lost']} lost ({'PASS' if summary['passed'] else 'FAIL'})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "chaos")
    parser.add_argument("--model_dir", default=None, help="default: the packaged all-MiniLM-L6-v2")
    parser.add_argument("--recovery_limit_s", type=float, default=RECOVERY_LIMIT_S,
                        help="longest allowed time from a fault until a request succeeds again")
    args = parser.parse_args(argv)
    from hfserve.packaged_model import packaged_model_dir

    summary = soak(args.minutes, args.seed, args.model_dir or str(packaged_model_dir()), args.out, args.users,
                   args.recovery_limit_s)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("faults", "memory")}, indent=2))
    print(f"chaos: {summary['requests']} requests, {summary['fault_count']} faults, {summary['lost']} lost; "
          f"{'PASS' if summary['passed'] else 'FAIL'}; {args.out / 'summary.json'}, {args.out / 'timeline.png'}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
