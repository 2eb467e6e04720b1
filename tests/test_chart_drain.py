"""The chart's drainDelaySeconds reaches every container of both runtimes (as HFSERVE_DRAIN_DELAY_S), and by
default is left to the runtime, which knows whether Knative's queue-proxy drains in front of it."""

from conformance.chart import find_runtime, render_chart

RUNTIMES = {"kserve-huggingface": 1, "kserve-huggingface-triton": 2}


def drain_env(values):
    objects = render_chart(values)
    found = {}
    for runtime, count in RUNTIMES.items():
        containers = find_runtime(objects, runtime)["spec"]["containers"]
        assert len(containers) == count
        for c in containers:
            found[(runtime, c["name"])] = {e["name"]: e.get("value") for e in c.get("env", [])}.get(
                "HFSERVE_DRAIN_DELAY_S")
    return found


def test_default_leaves_the_delay_to_the_runtime():
    assert set(drain_env(None).values()) == {None}


def test_set_delay_reaches_every_container():
    found = drain_env({"drainDelaySeconds": 8})
    assert len(found) == 3 and set(found.values()) == {"8"}
