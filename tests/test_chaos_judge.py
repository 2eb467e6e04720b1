"""The chaos soak's verdict (loadtests/chaos/judge.py) and its fault schedule, on made-up records: what passes, and
each way a run fails, including the floors (200s outside the fault windows, every kind of fault)."""

from __future__ import annotations

import pytest

from loadtests.chaos.faults import schedule
from loadtests.chaos.judge import (
    FAULTS,
    OK_OUTSIDE_FLOOR,
    SERVED_BETWEEN,
    Fault,
    Outcome,
    Run,
    judge,
    memory_report,
)


def _run(faults=None, extra=()) -> Run:
    """A clean run: 200s every 0.1 s from t=0 to t=200 around faults of every kind, 20 s apart and 5 s long."""
    run = Run()
    run.faults = faults if faults is not None else [Fault(k, 20.0 + 30 * i, 25.0 + 30 * i) for i, k in enumerate(FAULTS)]
    run.outcomes = [Outcome(t / 10, t / 10 + 0.05, "v1", 200) for t in range(2000)] + list(extra)
    return run


def _judge(run: Run, left_pids=(), left_shm=(), recoveries=(5.0,)) -> dict:
    return judge(run, 0.0, list(recoveries), list(left_pids), list(left_shm), seed=6, minutes=1, recovery_limit_s=300)


def test_a_clean_run_passes():
    summary = _judge(_run(extra=[Outcome(21.0, 21.1, "v2", 503, json_error=True),
                                 Outcome(51.0, 51.2, "bad", 400, json_error=True, bad_input=True)]))
    assert summary["passed"], summary["problems"]
    assert summary["fault_kinds"] == sorted(FAULTS) and summary["answered_503"] == 1 and summary["lost"] == 0
    assert summary["ok_outside_fault_windows"] >= OK_OUTSIDE_FLOOR


def test_a_503_outside_any_fault_window_is_lost():
    summary = _judge(_run(extra=[Outcome(10.0, 10.1, "openai", 503, json_error=True)]))
    assert not summary["passed"] and summary["lost"] == 1
    assert "503 outside any fault window at +10.1 s" in summary["problems"][0]


def test_only_503s_between_faults_fails_the_floor():
    """The audit's loaded run: 4 of 5,216 requests answered 200, the rest accepted 503s during a long recovery."""
    faults = [Fault(k, 20.0 + 30 * i, 25.0 + 30 * i) for i, k in enumerate(FAULTS)]
    run = _run(faults)
    run.outcomes = [Outcome(t / 10, t / 10 + 0.05, "v1", 503, json_error=True) for t in range(200, 2000)
                    if any(f.start <= t / 10 <= f.end for f in faults if f.kind != "bad_inputs")]
    run.outcomes += [Outcome(1.0, 1.1, "v1", 200)] * 4
    summary = _judge(run)
    assert summary["lost"] == 0 and summary["ok_outside_fault_windows"] == 4
    assert any("only 4 requests answered 200 outside the fault windows" in p for p in summary["problems"])


def test_every_recovery_must_serve_before_the_next_fault():
    """Back after the fault by the probe's word, but answering only 503s until the next one: not recovered."""
    faults = [Fault(k, 20.0 + 30 * i, 25.0 + 30 * i) for i, k in enumerate(FAULTS)]
    run = _run(faults)
    third = faults[2]
    run.outcomes = [o for o in run.outcomes if not third.start <= o.end < faults[3].start]
    run.outcomes += [Outcome(t / 10, t / 10 + 0.05, "v1", 503, json_error=True)
                     for t in range(int(third.start * 10), int(third.end * 10))]
    run.outcomes += [Outcome(third.end + 6 + i, third.end + 6.1 + i, "v1", 200) for i in range(SERVED_BETWEEN - 1)]
    summary = _judge(run)
    assert summary["lost"] == 0
    assert summary["problems"] == [f"only {SERVED_BETWEEN - 1} requests answered 200 after {third.kind} at "
                                   f"+{third.start:.1f} s and before the next fault (floor {SERVED_BETWEEN})"]


def test_every_kind_of_fault_must_happen():
    summary = _judge(_run([Fault("kill_triton", 20.0, 25.0), Fault("bad_inputs", 50.0, 50.5)]))
    assert not summary["passed"]
    assert any("faults never injected" in p and "term_transformer" in p and "kill_triton" not in p.split(":")[1]
               for p in summary["problems"])


@pytest.mark.parametrize("outcome,why", [
    (Outcome(10.0, 70.0, "v1", None, "ReadTimeout"), "hung past 60 s"),
    (Outcome(10.0, 10.1, "v2", 500), "v2 request -> 500"),
    (Outcome(21.0, 21.1, "v1", 503), "v1 request -> 503"),  # a 503 without a JSON body, even inside a window
    (Outcome(10.0, 10.1, "bad", 500, bad_input=True), "bad input -> 500"),
    (Outcome(10.0, 10.1, "bad", 422, json_error=False, bad_input=True), "bad input -> 422 (json error: False)"),
])
def test_what_fails_a_run(outcome, why):
    summary = _judge(_run(extra=[outcome]))
    assert not summary["passed"] and any(why in p for p in summary["problems"]), summary["problems"]


def test_requests_in_flight_when_the_transformer_is_killed_are_reported_apart():
    faults = [Fault(k, 20.0 + 30 * i, 25.0 + 30 * i) for i, k in enumerate(FAULTS)]
    kill = next(f for f in faults if f.kind == "kill_transformer")
    dropped = Outcome(kill.start - 0.5, kill.start + 0.1, "v1", None, "RemoteProtocolError")
    summary = _judge(_run(faults, extra=[dropped]))
    assert summary["passed"] and summary["killed_in_flight_by_sigkill_of_the_transformer"] == 1
    late = Outcome(kill.start - 0.5, kill.start + 5.0, "v1", None, "RemoteProtocolError")  # not the kill's doing
    assert not _judge(_run(faults, extra=[late]))["passed"]
    racing = Outcome(kill.start + 0.05, kill.start + 0.1, "openai", None, "ReadError")  # queued as it died
    assert _judge(_run(faults, extra=[racing]))["killed_in_flight_by_sigkill_of_the_transformer"] == 1
    after = Outcome(kill.start + 1.5, kill.start + 1.6, "openai", None, "ReadError")  # dead by then: lost
    assert not _judge(_run(faults, extra=[after]))["passed"]


def test_leftovers_and_slow_recoveries_fail():
    summary = _judge(_run(), left_pids=[123], left_shm=["/dev/shm/hfserve_triton_9_ab_x"], recoveries=[5.0, 301.0])
    problems = " | ".join(summary["problems"])
    assert "processes left after the run: [123]" in problems and "/dev/shm segments left" in problems
    assert "did not return within 300 s after 1 fault(s)" in problems


def test_memory_growth_after_warmup_is_a_problem():
    rows = [{"t": float(t), "pid": 7, "role": "transformer", "rss": 100 * 2**20 + (t * 2**20 if t > 40 else 0),
             "fds": 20} for t in range(0, 100, 2)]
    report = memory_report(rows, [])
    assert report["problems"] == ["transformer pid 7: RSS grew 98% after warm-up"]
    flat = [dict(r, rss=100 * 2**20) for r in rows]
    assert memory_report(flat, [])["problems"] == []


def test_a_torch_stub_may_grow_to_the_allocators_plateau_but_not_past_it():
    def stub(growth_mb):
        return [{"t": float(t), "pid": 9, "role": "stub", "rss": (100 + (growth_mb if t > 60 else 0)) * 2**20,
                 "fds": 4} for t in range(0, 100, 2)]

    assert memory_report(stub(30), [])["problems"] == []  # +30%: glibc meeting new shapes
    assert memory_report(stub(50), [])["problems"] == ["stub pid 9: RSS grew 50% after warm-up"]


def test_the_schedule_is_fixed_by_the_seed_and_covers_every_kind_per_round():
    assert schedule(6, 2) == schedule(6, 2)
    order = schedule(6, 3)
    for r in range(3):
        assert sorted(order[6 * r: 6 * (r + 1)]) == sorted(FAULTS)
    assert {tuple(schedule(seed)) for seed in range(10)} != {tuple(schedule(6))}
