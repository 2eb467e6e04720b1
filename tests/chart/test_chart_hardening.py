"""The rendered chart's isolation (security review M4) and API key (M5): the transformer, which parses untrusted
input, cannot write the Triton container's model repository or caches; the key comes from a Secret mounted read-only
into the containers that serve clients, never into Triton."""

from pathlib import PurePosixPath

from tests.chart.chartlib import arg_value, by_kind, container, render, validate_object

TRITON, HF = "kserve-huggingface-triton", "kserve-huggingface"


def runtimes(values=None) -> dict:
    return by_kind(render(values), "ClusterServingRuntime")


def env_value(c: dict, name: str) -> str | None:
    return next((e.get("value") for e in c.get("env") or [] if e["name"] == name), None)


def volume_at(c: dict, path: str) -> str:
    """The volume of the deepest mount holding `path` in container `c`."""
    holding = [m for m in c["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert holding, f"{path} is on no volume of {c['name']} (the root filesystem is read-only)"
    return max(holding, key=lambda m: len(m["mountPath"]))["name"]


def test_the_transformer_shares_only_the_tokenizer_with_triton_and_reads_it_only():
    runtime = runtimes()[TRITON]
    triton, transformer = container(runtime, "kserve-container"), container(runtime, "transformer-container")
    triton_mounts = {m["name"]: m for m in triton["volumeMounts"]}
    transformer_mounts = {m["name"]: m for m in transformer["volumeMounts"]}
    shared = set(triton_mounts) & set(transformer_mounts)
    assert shared == {"tokenizer"}, shared
    assert transformer_mounts["tokenizer"].get("readOnly") is True
    assert not triton_mounts["tokenizer"].get("readOnly")  # the launcher exports the tokenizer files there


def test_tritons_repository_and_caches_are_on_volumes_the_transformer_does_not_mount():
    runtime = runtimes()[TRITON]
    triton, transformer = container(runtime, "kserve-container"), container(runtime, "transformer-container")
    transformer_volumes = {m["name"] for m in transformer["volumeMounts"]}
    private_paths = [arg_value(triton["args"], "--repository_dir"), env_value(triton, "HF_HOME"),
                     env_value(triton, "XDG_CACHE_HOME"), env_value(triton, "TMPDIR"), "/dev/shm"]
    for path in private_paths:
        assert path, private_paths
        assert volume_at(triton, path) not in transformer_volumes, path
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    for name in ("triton-tmp", "triton-cache"):
        assert volumes[name]["emptyDir"]["sizeLimit"], name  # bounded, as the transformer's own


def test_no_api_key_unless_a_secret_is_named():
    for runtime in runtimes().values():
        for c in runtime["spec"]["containers"]:
            assert not any("api_key" in a for a in c["args"]), c["name"]
        assert "api-key" not in {v["name"] for v in runtime["spec"]["volumes"]}


def test_the_api_key_is_read_from_a_read_only_secret_by_the_serving_containers_only():
    found = runtimes({"apiKey": {"secretName": "hfserve-key", "secretKey": "token", "coversMetrics": True}})
    for name, serving in ((HF, "kserve-container"), (TRITON, "transformer-container")):
        runtime = found[name]
        assert validate_object(runtime) == []
        c = container(runtime, serving)
        assert arg_value(c["args"], "--api_key_file") == "/var/run/secrets/hfserve/api-key/token"
        assert "--api_key_covers_metrics" in c["args"]
        mount = next(m for m in c["volumeMounts"] if m["name"] == "api-key")
        assert mount["readOnly"] is True and mount["mountPath"] == "/var/run/secrets/hfserve/api-key"
        volume = next(v for v in runtime["spec"]["volumes"] if v["name"] == "api-key")
        assert volume["secret"] == {"secretName": "hfserve-key", "items": [{"key": "token", "path": "token"}]}
        assert not any("hfserve-key" in str(e) for e in c.get("env") or [])  # never in the environment
    triton = container(found[TRITON], "kserve-container")
    assert "api-key" not in {m["name"] for m in triton["volumeMounts"]}
    assert not any("api_key" in a for a in triton["args"])


def test_triton_listens_on_loopback_only():
    triton = container(runtimes()[TRITON], "kserve-container")
    assert arg_value(triton["args"], "--bind_address") == "127.0.0.1"
