"""What a chaos soak recorded, and the verdict on it: pure functions of the records (no processes, no clock)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field

GRACE_S = 5.0             # a 503 this soon after a fault window closes still counts as inside it
REQUEST_TIMEOUT_S = 60.0
WARMUP_S = 20.0
RSS_GROWTH = 0.10
# A process running torch (Triton's Python-backend stub) grows while glibc's allocator meets new tensor shapes,
# then stays flat: runtime 1 went 490 -> 682 MB (+39%) over its first ~5k requests and no further over 12k
# (docs/reliability.md, `make rss-soak`). A minute-long soak sees only that warm-up, so its bound is the plateau's.
RSS_GROWTH_BY_ROLE = {"stub": 0.40}
FD_SLACK = 8
OK_OUTSIDE_FLOOR = 50     # 200s outside the fault windows: the service served between faults, not only 503s
SERVED_BETWEEN = 10       # 200s outside the windows after each fault, before the next (the soak waits for them)
FAULTS = ("kill_triton", "kill_stub", "kill_transformer", "term_triton", "term_transformer", "bad_inputs")


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


def in_window(t: float, faults: list[Fault]) -> bool:
    return any(f.start - 0.5 <= t <= (f.end or f.start) + GRACE_S for f in faults if f.kind != "bad_inputs")


# A request sent just after the SIGKILL can still reach the dying transformer's listen queue and be reset.
KILL_RACE_S = 1.0


def killed_with_server(o: Outcome, faults: list[Fault]) -> bool:
    return any(f.kind == "kill_transformer" and o.start <= f.start + KILL_RACE_S and f.start <= o.end <= f.start + 2.0
               for f in faults)


def served_after(fault: Fault, run: Run, until: float) -> int:
    """200s answered outside every fault window from the start of `fault` until `until`."""
    return sum(o.status == 200 and not o.bad_input and fault.start <= o.end < until and not in_window(o.end, run.faults)
               for o in run.outcomes)


def judge(run: Run, t0: float, recoveries: list[float], left_pids: list[int], left_shm: list[str], seed: int,
          minutes: float, recovery_limit_s: float, ok_outside_floor: int = OK_OUTSIDE_FLOOR) -> dict:
    """The summary of a soak: counts, and `problems` (empty: passed). `left_pids` and `left_shm` are the pod's
    processes and Triton shared-memory segments still there after it was stopped."""
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
    ok_outside = sum(o.status == 200 and not in_window(o.end, run.faults) for o in load)
    if ok_outside < ok_outside_floor:
        problems.append(f"only {ok_outside} requests answered 200 outside the fault windows "
                        f"(floor {ok_outside_floor}): the service hardly served between faults")
    ends = [f.start for f in run.faults[1:]] + [max((o.end for o in run.outcomes), default=0.0) + 1]
    for fault, until in zip(run.faults, ends):
        if (served := served_after(fault, run, until)) < SERVED_BETWEEN:
            problems.append(f"only {served} requests answered 200 after {fault.kind} at +{fault.start - t0:.1f} s "
                            f"and before the next fault (floor {SERVED_BETWEEN})")
    missing = [kind for kind in FAULTS if not any(f.kind == kind for f in run.faults)]
    if missing:
        problems.append(f"faults never injected: {missing}")
    slow = [r for r in recoveries if r >= recovery_limit_s]
    if slow:
        problems.append(f"service did not return within {recovery_limit_s:.0f} s after {len(slow)} fault(s)")
    if left_pids:
        problems.append(f"processes left after the run: {left_pids}")
    if left_shm:
        problems.append(f"/dev/shm segments left: {left_shm}")
    memory = memory_report(run.samples, run.faults)
    problems += memory.pop("problems")
    return {
        "seed": seed, "minutes": minutes, "requests": len(load), "ok": sum(o.status == 200 for o in load),
        "ok_outside_fault_windows": ok_outside, "answered_503": sum(o.status == 503 for o in load),
        "refused_or_dropped": sum(o.status is None for o in load),
        "lost": lost, "killed_in_flight_by_sigkill_of_the_transformer": killed_in_flight,
        "bad_inputs": len(bad), "faults": [asdict(f) | {"start": round(f.start - t0, 2),
                                                        "end": round((f.end or f.start) - t0, 2)} for f in run.faults],
        "fault_count": len(run.faults), "fault_kinds": sorted({f.kind for f in run.faults}),
        "longest_recovery_s": round(max(recoveries, default=0.0), 1), "recovery_limit_s": recovery_limit_s,
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
        if growth > RSS_GROWTH_BY_ROLE.get(first["role"], RSS_GROWTH):
            problems.append(f"{first['role']} pid {pid}: RSS grew {growth:.0%} after warm-up")
        if last["fds"] > warm["fds"] + FD_SLACK:
            problems.append(f"{first['role']} pid {pid}: open fds {warm['fds']} -> {last['fds']}")
    return {"processes": report, "problems": problems}
