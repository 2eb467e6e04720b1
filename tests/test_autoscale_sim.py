"""The autoscalers restated in loadtests/autoscale_sim.py (Knative's KPA, the Kubernetes HPA) and the pod model,
as pure functions on hand-made inputs whose answers follow from the cited rules."""

from __future__ import annotations

import math

import pytest

from loadtests.autoscale_sim import (
    HPA,
    KPA,
    PodModel,
    hpa_desired,
    kpa_target,
    simulate,
    trace,
    write_block,
)


def test_kpa_target_is_the_smaller_of_target_and_container_concurrency_times_utilization():
    assert kpa_target(16, 16) == pytest.approx(11.2)
    assert kpa_target(40, 16) == pytest.approx(11.2)  # containerConcurrency caps the annotation
    assert kpa_target(None, 0) == pytest.approx(70.0)  # ContainerConcurrencyTargetDefault 100
    assert kpa_target(10, 0) == pytest.approx(7.0)


def test_kpa_stable_mode_sizes_to_the_stable_window_and_halves_at_most_per_decision():
    kpa = KPA(target=10)
    assert kpa.decide(0, ready=4, stable_value=35, panic_value=35) == 4
    assert kpa.decide(2, ready=10, stable_value=5, panic_value=5) == 5  # floor(10 / MaxScaleDownRate 2)
    assert kpa.panic_time is None


def test_kpa_panics_at_twice_the_ready_pods_and_does_not_scale_down_until_a_stable_window_passes():
    kpa = KPA(target=10)
    assert kpa.decide(0, ready=2, stable_value=20, panic_value=41) == 5  # dppc 5 / 2 pods >= 2.0: panic
    assert kpa.panic_time == 0
    assert kpa.decide(30, ready=5, stable_value=10, panic_value=10) == 5  # no decrease while panicking
    assert kpa.decide(61, ready=5, stable_value=10, panic_value=10) == 2  # un-panicked: floor(5 / 2) bounds it
    assert kpa.panic_time is None


def test_kpa_scale_down_delay_keeps_the_highest_count_of_the_window():
    kpa = KPA(target=10, scale_down_delay_s=300)
    assert kpa.decide(0, ready=4, stable_value=40, panic_value=40) == 4
    assert kpa.decide(100, ready=4, stable_value=5, panic_value=5) == 4
    assert kpa.decide(301, ready=4, stable_value=5, panic_value=5) == 2


def test_hpa_formula_and_tolerance():
    assert hpa_desired(3, metric_per_pod=100, target=70) == math.ceil(3 * 100 / 70)
    assert hpa_desired(3, metric_per_pod=75, target=70) == 3  # |75/70 - 1| = 0.07 <= 0.1
    assert hpa_desired(4, metric_per_pod=10, target=70) == 1


def test_hpa_scale_down_waits_for_its_stabilization_window_and_scale_up_is_bounded():
    hpa = HPA(target=50)
    assert hpa.decide(0, current=2, ready=2, ready_sum=2 * 100, ready_only_when_up=True) == 4
    assert hpa.decide(15, current=4, ready=4, ready_sum=4 * 10, ready_only_when_up=True) == 4  # 300 s window
    assert hpa.decide(320, current=4, ready=4, ready_sum=4 * 10, ready_only_when_up=True) == 1
    assert HPA(target=1).decide(0, current=2, ready=2, ready_sum=2000, ready_only_when_up=False) == 6  # +4 pods
    assert HPA(target=1).decide(0, current=10, ready=10, ready_sum=1e6, ready_only_when_up=False) == 20  # +100 %


def test_hpa_counts_not_ready_pods_at_zero_cpu_when_scaling_up():
    # 2 ready pods at 100 % of 4: per ready pod 100/50 -> 4 pods; counting the 2 starting ones at 0 % -> ratio 1
    assert HPA(target=50).decide(0, current=4, ready=2, ready_sum=200, ready_only_when_up=True) == 4


def test_pod_model_fitted_reproduces_its_two_points():
    model = PodModel.fitted([(50.0, 2.0, 0), (80.0, 8.0, 0)], mean_tokens=20.0, time_to_ready_s=30)
    for rps, batch in ((50.0, 2.0), (80.0, 8.0)):
        assert batch / (model.pass_s + batch * 20.0 * model.token_s) == pytest.approx(rps)


def test_trace_rates_and_the_long_share():
    arrivals = trace([(200, 50, 0.0), (200, 10, 1.0)], short=[5], long=[100], seed=3)
    first = [tok for t, tok in arrivals if t < 200]
    second = [tok for t, tok in arrivals if t >= 200]
    assert len(first) == pytest.approx(50 * 200, rel=0.05) and set(first) == {5}
    assert len(second) == pytest.approx(10 * 200, rel=0.1) and set(second) == {100}


def _model() -> PodModel:
    return PodModel(pass_s=0.02, token_s=0.0003, time_to_ready_s=20)


def test_a_fixed_pod_count_under_its_capacity_keeps_latency_near_one_pass():
    arrivals = trace([(120, 20, 0.0)], short=[20], long=[20], seed=1)
    run = simulate("fixed", arrivals, _model(), HPA(target=1e9), "cpu", min_replicas=2, max_replicas=2, initial=2)
    assert len(run.latencies_s) == len(arrivals)
    assert set(run.replicas) == {2}
    assert run.p99_ms() < 4 * 1000 * (0.02 + 20 * 0.0003)


def test_overload_scales_out_on_queued_tokens_and_not_on_a_gpu_pod_s_cpu():
    arrivals = trace([(600, 150, 0.0)], short=[30], long=[30], seed=2)
    tokens = simulate("tokens", arrivals, _model(), HPA(target=100), "queued_tokens")
    gpu_cpu = simulate("cpu", arrivals, _model(), HPA(target=70), "cpu", cpu_share=0.25)
    assert max(tokens.replicas) >= 3 and tokens.minute_p99_s[-1] < 0.5
    assert set(gpu_cpu.replicas) == {1} and gpu_cpu.minute_p99_s[-1] > 10  # a queue that only grows


def test_write_block_replaces_only_between_the_markers(tmp_path):
    doc = tmp_path / "a.md"
    doc.write_text("intro\n<!-- autoscale-sim:begin -->\nold\n<!-- autoscale-sim:end -->\noutro\n")
    write_block(str(doc), "new table")
    assert doc.read_text() == "intro\n<!-- autoscale-sim:begin -->\nnew table\n<!-- autoscale-sim:end -->\noutro\n"


def test_closed_loop_queued_tokens_weights_long_passes_more():
    from loadtests.autoscale_sim import closed_loop_queued_tokens

    model = PodModel(pass_s=0.0, token_s=0.001, time_to_ready_s=0)
    assert closed_loop_queued_tokens(model, [10], 4) == pytest.approx(40)
    # half 10, half 100 tokens, one client: time-weighted (10*10 + 100*100) / 110 = 91.8, not the mean 55
    assert closed_loop_queued_tokens(model, [10, 100], 1, passes=20000) == pytest.approx(10100 / 110, rel=0.02)
