"""The drain delay's default: a few seconds in Kubernetes' raw deployment mode, none under Knative (whose
queue-proxy drains before the container sees SIGTERM), and the chart's setting wins over both."""

from hfserve.drain_delay import DEFAULT_DELAY_S, default_delay_s


def test_raw_deployment_waits_for_endpoint_removal(monkeypatch):
    monkeypatch.delenv("K_SERVICE", raising=False)
    monkeypatch.delenv("HFSERVE_DRAIN_DELAY_S", raising=False)
    assert default_delay_s() == DEFAULT_DELAY_S >= 5


def test_knative_does_not_double_the_queue_proxy_drain(monkeypatch):
    monkeypatch.delenv("HFSERVE_DRAIN_DELAY_S", raising=False)
    monkeypatch.setenv("K_SERVICE", "minilm-predictor")
    assert default_delay_s() == 0


def test_the_chart_setting_wins(monkeypatch):
    monkeypatch.setenv("K_SERVICE", "minilm-predictor")
    monkeypatch.setenv("HFSERVE_DRAIN_DELAY_S", "12")
    assert default_delay_s() == 12
