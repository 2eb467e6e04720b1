"""The startup probe is on by default and sized from startupSeconds; liveness has no fixed initial delay (the
startup probe holds it off while the model downloads, loads and warms up)."""

import pytest

from .chartlib import by_kind, render

SERVING = (("kserve-huggingface", "kserve-container", "huggingface"),
           ("kserve-huggingface-triton", "transformer-container", "triton.transformer"))


def container(objects, runtime: str, name: str) -> dict:
    spec = by_kind(objects, "ClusterServingRuntime")[runtime]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


def nested(path: str, value) -> dict:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


@pytest.mark.parametrize("runtime, name, key", SERVING)
def test_the_startup_probe_is_on_and_covers_startup_seconds(runtime, name, key):
    c = container(render(), runtime, name)
    probe = c["startupProbe"]
    assert probe["httpGet"]["path"] == "/v2/health/live"
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 600
    assert "initialDelaySeconds" not in c["livenessProbe"]


@pytest.mark.parametrize("runtime, name, key", SERVING)
def test_startup_seconds_round_up_to_whole_periods_and_an_explicit_threshold_wins(runtime, name, key):
    probe = container(render(nested(key, {"startupSeconds": 61})), runtime, name)["startupProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (5, 13)
    probe = container(render(nested(key, {"startupSeconds": 61, "startupProbe": {"failureThreshold": 4}})),
                      runtime, name)["startupProbe"]
    assert probe["failureThreshold"] == 4
    assert "startupProbe" not in container(render(nested(key, {"startupProbe": None})), runtime, name)
