"""`make capacity` (loadtests/capacity.py): the knee on synthetic steps, the recipe values, the gauge parsing, and
one short real probe against runtime 1 on loopback (the packaged MiniLM) that reads the scaler's gauges."""

from __future__ import annotations

from loadtests.capacity import TOKEN_HEADROOM, Step, find_knee, parse_gauges, probe, recipe, render
from tests.servers import served


def _step(c: int, rps: float, p99: float, tokens: float = 0.0, errors: int = 0, cpu: float | None = None) -> Step:
    return Step(c, rps, p99, float(c), tokens, cpu, errors)


STEPS = [_step(1, 20, 60), _step(2, 38, 70), _step(4, 60, 110, 120), _step(8, 80, 180, 260, cpu=1.6),
         _step(16, 82, 350, 520), _step(32, 83, 900, 1100)]


def test_knee_is_the_last_step_that_still_adds_throughput_under_the_p99_target():
    assert find_knee(STEPS, p99_ms=400).concurrency == 8  # 16 adds 2.5 % < 5 %
    assert find_knee(STEPS, p99_ms=400, min_gain=0.01).concurrency == 16
    assert find_knee(STEPS, p99_ms=150).concurrency == 4  # 8 misses the target
    assert find_knee(STEPS, p99_ms=50) is None
    assert find_knee(list(reversed(STEPS)), p99_ms=400).concurrency == 8  # order of the input does not matter


def test_a_step_with_errors_ends_the_search():
    steps = [_step(1, 20, 60), _step(2, 38, 70, errors=3), _step(4, 60, 110)]
    assert find_knee(steps, p99_ms=400).concurrency == 1


def test_recipe_values_from_the_knee():
    r = recipe(find_knee(STEPS, p99_ms=400), cpu_request=2.0)
    assert (r.container_concurrency, r.kpa_target, r.hpa_cpu_utilization) == (8, 8, 80)
    assert r.keda_threshold_tokens == round(TOKEN_HEADROOM * 260)
    assert recipe(find_knee(STEPS, p99_ms=150)).hpa_cpu_utilization is None  # no CPU figure, no request
    text = render(STEPS, find_knee(STEPS, p99_ms=400), 400, 2.0)
    assert "containerConcurrency: 8" in text and f"{round(TOKEN_HEADROOM * 260)}" in text and "| 8 (knee) |" in text


def test_parse_gauges_sums_label_sets_and_skips_other_families():
    text = ('# TYPE hfserve_queue_tokens gauge\nhfserve_queue_tokens{model_name="a"} 10.0\n'
            'hfserve_queue_tokens{model_name="b"} 5.0\nhfserve_queue_tokens_other 99\n'
            'hfserve_requests_in_flight 3.0\nprocess_cpu_seconds_total 12.5\n')
    assert parse_gauges(text) == {"hfserve_queue_tokens": 15.0, "hfserve_requests_in_flight": 3.0,
                                  "process_cpu_seconds_total": 12.5}


runtime = served("minilm", "minilm")  # shared with the other modules serving the plain packaged MiniLM


def test_short_probe_against_runtime_1_reads_its_gauges(runtime):
    lines: list[str] = []
    steps, knee = probe(runtime.url, runtime.model_name, [1, 2], seconds=2.0, p99_ms=60_000, min_gain=-1.0,
                        texts=200, log=lines.append)
    assert [s.concurrency for s in steps] == [1, 2] and len(lines) == 2
    for s in steps:
        assert s.errors == 0 and s.requests_per_s > 0
        assert 0.3 * s.concurrency <= s.in_flight <= s.concurrency + 1e-9  # the closed loop's clients, sampled
        assert s.queued_tokens > 0 and s.cpu_cores is not None and s.cpu_cores > 0
    assert knee is steps[-1]
