"""hfserve.config: every command line is generated from the one declaration, and each rule that joins two settings
holds wherever the setting is used (the parsers, the engines, the repository builder)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hfserve import args as cli
from hfserve import config
from hfserve.config import (
    BatchingConfig,
    ConfigError,
    ContainerConfig,
    ExecutionConfig,
    LauncherConfig,
    ModelConfig,
    RepositoryConfig,
    ServingConfig,
    TritonBatchingConfig,
)
from hfserve.triton import __main__ as launcher
from hfserve.triton import repository
from kserve import model_server

from devkit import triton_pair

KSERVE_FLAGS = {s for a in model_server.parser._actions for s in a.option_strings}
# devkit/triton_pair.py's own options: how it runs the pair locally, none of them a runtime setting.
PAIR_OWN_FLAGS = {"--port", "--grpc_port", "--triton_http_port", "--triton_grpc_port", "--triton_metrics_port",
                  "--restart_backoff_s", "--restart_backoff_max_s", "--restart_reset_after_s", "--transformer_arg"}


def declared(*groups: type) -> dict[str, dataclasses.Field]:
    return {config.flag(f): f for group in groups for f in config.options(group)}


def our_actions(parser: argparse.ArgumentParser, foreign: set[str]) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if s not in foreign | {"-h", "--help"}}


PARSERS = {
    "hfserve.huggingface": (cli.huggingface_parser, config.HUGGINGFACE_GROUPS, KSERVE_FLAGS),
    "hfserve.transformer": (cli.transformer_parser, config.TRANSFORMER_GROUPS, KSERVE_FLAGS),
    "hfserve.triton": (launcher.build_parser, config.LAUNCHER_GROUPS, set()),
    "hfserve.triton.repository": (repository.build_parser, (RepositoryConfig,), {"--config"}),
}


@pytest.mark.parametrize("module", list(PARSERS))
def test_every_option_of_a_parser_is_generated_from_the_declaration(module):
    build, groups, foreign = PARSERS[module]
    actions = our_actions(build(), foreign)
    fields = declared(*groups)
    assert set(actions) == set(fields), f"{module}: not declared {set(actions) - set(fields)}, " \
                                        f"missing {set(fields) - set(actions)}"
    for name, action in actions.items():
        meta = fields[name].metadata
        # the very help and choices of the declaration: an option added by hand next to it would not match both
        assert action.help == meta["help"] and tuple(action.choices or ()) == tuple(meta["choices"] or ()), name
        assert action.dest == fields[name].name


def test_the_kserve_servers_use_kserves_own_options_unchanged():
    for build in (cli.huggingface_parser, cli.transformer_parser):
        parser = build()
        ours = {s for a in parser._actions for s in a.option_strings} - KSERVE_FLAGS - {"-h", "--help"}
        assert not ours & KSERVE_FLAGS


def test_no_option_is_declared_twice_and_each_has_help():
    seen: dict[str, str] = {}
    for group in config.ALL_GROUPS:
        for f in dataclasses.fields(group):
            if config.is_group(config.type_hints(group)[f.name]):
                continue
            assert f.name not in seen, f"--{f.name} is declared in {seen[f.name]} and {group.__name__}"
            seen[f.name] = group.__name__
            assert f.metadata.get("help"), f"--{f.name} has no help text"
    assert set(declared(*config.ALL_GROUPS)) == {f"--{name}" for name in seen}
    used = {g for groups in (config.HUGGINGFACE_GROUPS, config.TRANSFORMER_GROUPS, config.LAUNCHER_GROUPS)
            for g in groups}
    assert used <= set(config.ALL_GROUPS)


def test_the_dev_pair_passes_declared_settings_on_and_adds_only_its_own():
    actions = our_actions(triton_pair.build_parser(), set())
    passed_on = set(actions) - PAIR_OWN_FLAGS
    fields = declared(*config.ALL_GROUPS)
    assert passed_on == {"--model_name", "--model_dir", "--bind_address"}
    for name in passed_on:
        assert actions[name].help == fields[name].metadata["help"]
    # --grpc_port there is the transformer's (kserve's own option), not Triton's (--triton_grpc_port)
    assert not (PAIR_OWN_FLAGS - {"--grpc_port"}) & set(fields), "a setting written again in devkit/triton_pair.py"


def test_the_dev_pair_builds_both_command_lines_from_the_declaration(tmp_path):
    pair = triton_pair.TritonPair(tmp_path / "model", "m1", port=9100, triton_ports=(9101, 9102, 9103))
    try:
        launched = launcher.parse_args(pair.commands["triton"][3:])
        served = cli.transformer_parser().parse_args(pair.commands["transformer"][3:])
    finally:
        pair.stop(timeout_s=1)
    settings = config.from_namespace(RepositoryConfig, launched)
    assert settings.model_name == "m1" and settings.model.model_dir == tmp_path / "model"
    assert (launched.http_port, launched.grpc_port, launched.metrics_port) == (9101, 9102, 9103)
    assert served.model_dir == Path(launched.tokenizer_export_dir) and served.predictor_host.endswith(":9102")


# ------------------------------------------------------------------------------------------------------------------
# the rules, each written once


def test_quantize_needs_onnx_everywhere(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="--quantize int8 needs --engine onnx"):
        ExecutionConfig(quantize="int8").validate()
    ExecutionConfig(quantize="int8", engine="onnx", device="cpu").validate()
    from hfserve.engine.loading import load_encoder_engine

    with pytest.raises(ValueError, match="needs --engine onnx"):
        load_encoder_engine(tiny_models("text_embedding"), engine="torch", quantize="int8")
    with pytest.raises(ValueError, match="needs --engine onnx"):
        repository.build_repository(tiny_models("text_embedding"), tmp_path, "m", device="cpu", quantize="int8")


def test_int8_is_cpu_only_everywhere(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="CPU option"):
        ExecutionConfig(engine="onnx", quantize="int8", device="cuda").validate()
    config.check_quantize_placement("int8", on_gpu=False)
    config.check_quantize_placement("none", on_gpu=True)
    with pytest.raises(ConfigError, match="CPU option"):
        config.check_quantize_placement("int8", on_gpu=True)
    from hfserve.engine.onnx_engine import select_providers

    # `auto` turns into the GPU at load: the same rule refuses it there
    with pytest.raises(ValueError, match="CPU option"):
        select_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], quantize="int8")
    assert select_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], quantize="int8") == \
        ["CPUExecutionProvider"]


def test_device_names_everywhere(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="unknown device 'mps'; choose one of auto, cpu, cuda"):
        config.check_device("mps")
    with pytest.raises(ConfigError, match="unknown device"):
        ExecutionConfig(device="tpu").validate()
    from hfserve.engine.device import resolve_device
    from hfserve.engine.onnx_engine import select_providers

    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("mps")  # torch would accept it
    with pytest.raises(ValueError, match="unknown device"):
        select_providers("gpu", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="unknown device"):
        repository.build_repository(tiny_models("text_embedding"), tmp_path, "m", device="gpu")
    assert repository.instance_kind("cpu") == "KIND_CPU"


def test_other_choices_and_bounds():
    with pytest.raises(ConfigError, match="unknown dtype"):
        ExecutionConfig(dtype="int4").validate()
    with pytest.raises(ConfigError, match="unknown engine 'tensorrt'"):
        ExecutionConfig(engine="tensorrt").validate()
    with pytest.raises(ConfigError, match="unknown task"):
        ModelConfig(task="summarization").validate()
    with pytest.raises(ConfigError, match="--max_batch_size must be at least 1"):
        BatchingConfig(max_batch_size=0).validate()
    with pytest.raises(ConfigError, match="--max_batch_tokens must be at least 1"):
        BatchingConfig(max_batch_tokens=0).validate()
    with pytest.raises(ConfigError, match="--instance_count"):
        TritonBatchingConfig(instance_count=0).validate()
    with pytest.raises(ConfigError, match="--max_queue_delay_us"):
        TritonBatchingConfig(max_queue_delay_us=-1).validate()
    with pytest.raises(ConfigError, match="valid Triton model name"):
        RepositoryConfig(model_name="a/b").validate()
    with pytest.raises(ConfigError, match="unknown onnx_backend"):
        RepositoryConfig(model_name="m", onnx_backend="tensorrt").validate()
    RepositoryConfig(model_name="m.v1-2_x").validate()


@pytest.mark.parametrize("module, argv, message", [
    ("hfserve.huggingface", ["--quantize", "int8"], "--quantize int8 needs --engine onnx"),
    ("hfserve.huggingface", ["--engine", "onnx", "--quantize", "int8", "--device", "cuda"], "CPU option"),
    ("hfserve.huggingface", ["--device", "mps"], "invalid choice: 'mps'"),
    ("hfserve.huggingface", ["--max_batch_size", "0"], "must be at least 1"),
    ("hfserve.huggingface", ["--auto_truncate", "maybe"], "expected true or false"),
    ("hfserve.transformer", ["--max_request_items", "0"], "must be at least 1"),
    ("hfserve.triton", ["--model_name", "m", "--model_dir", "/x", "--quantize", "int8"], "needs --engine onnx"),
    ("hfserve.triton", ["--model_name", "m/x", "--model_dir", "/x"], "valid Triton model name"),
    ("hfserve.triton", ["--model_name", "m", "--model_dir", "/x", "--preferred_batch_sizes", "8,0"],
     "batch sizes must be positive"),
    ("hfserve.triton", ["--model_name", "m"], "the following arguments are required: --model_dir"),
])
def test_a_broken_rule_is_a_usage_error_before_anything_loads(module, argv, message, capsys):
    parse = {"hfserve.huggingface": lambda a: cli.parse(cli.huggingface_parser(), config.HUGGINGFACE_GROUPS, a),
             "hfserve.transformer": lambda a: cli.parse(cli.transformer_parser(), config.TRANSFORMER_GROUPS, a),
             "hfserve.triton": launcher.parse_args}[module]
    with pytest.raises(SystemExit) as exited:
        parse(["--model_name", "m", *argv] if module != "hfserve.triton" else argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_flags_keep_their_defaults():
    """The chart, the docs and the tests rely on these: a default that moves is a behaviour change."""
    hf = cli.huggingface_parser().parse_args([])
    assert (hf.model_dir, hf.task, hf.dtype, hf.device, hf.engine, hf.quantize, hf.onnx_cache_dir) == \
        (Path("/mnt/models"), None, "auto", "auto", "torch", "none", None)
    assert (hf.max_batch_size, hf.max_batch_delay_ms, hf.max_batch_tokens, hf.max_length) == (32, 0.0, None, None)
    assert (hf.max_request_items, hf.max_request_bytes, hf.max_concurrent_requests) == (64, 1 << 20, 512)
    assert (hf.auto_truncate, hf.bind_address, hf.drain_delay_s) == (True, "0.0.0.0", None)
    assert not (hf.enable_repository_routes or hf.request_timing_logs or hf.return_probabilities)
    tr = cli.transformer_parser().parse_args([])
    assert (tr.predictor_host, tr.triton_model_name, tr.predictor_timeout_s, tr.model_dir_wait_s) == \
        ("127.0.0.1:8001", None, 30.0, 600.0)
    tl = launcher.parse_args(["--model_name", "m", "--model_dir", "/x"])
    # the launcher's own default: loopback (security review L8); the kserve servers keep 0.0.0.0
    assert (tl.http_port, tl.grpc_port, tl.metrics_port, tl.bind_address) == (8000, 8001, 8002, "127.0.0.1")
    assert (tl.preferred_batch_sizes, tl.max_queue_delay_us, tl.instance_count, tl.max_batch_size) == \
        ((8, 16, 32), 500, 1, 32)
    assert (tl.exit_timeout_s, tl.drain_quiet_s, tl.drain_delay_s, tl.log_verbose, tl.onnx_backend) == \
        (20, 1.0, None, 0, "auto")


# ------------------------------------------------------------------------------------------------------------------
# what travels between the parts


def test_repository_config_survives_json():
    settings = RepositoryConfig(
        model_name="m", repository_dir=Path("/r"), onnx_backend="native",
        model=ModelConfig(model_dir=Path("/models/m"), task="rerank", trust_remote_code=True),
        execution=ExecutionConfig(engine="onnx", quantize="int8", device="cpu", onnx_cache_dir=Path("/c")),
        batching=BatchingConfig(max_batch_size=8, max_batch_tokens=4096),
        triton_batching=TritonBatchingConfig(preferred_batch_sizes=(2, 4), max_queue_delay_us=0, instance_count=2))
    assert RepositoryConfig.from_json(settings.to_json()) == settings
    assert json.loads(settings.to_json())["model"]["model_dir"] == "/models/m"
    with pytest.raises(ConfigError, match="unknown settings"):
        RepositoryConfig.from_json(json.dumps({"model_name": "m", "engine": "onnx"}))  # not at the top level
    with pytest.raises(ConfigError, match="--max_batch_size: must be at least 1"):
        RepositoryConfig.from_json(json.dumps({"model_name": "m", "batching": {"max_batch_size": 0}}))


def test_to_argv_gives_back_the_same_settings():
    settings = (RepositoryConfig(model_name="m", model=ModelConfig(model_dir=Path("/x"), trust_remote_code=True),
                                 triton_batching=TritonBatchingConfig(preferred_batch_sizes=(4,))),
                ContainerConfig(bind_address="127.0.0.1", drain_delay_s=0.0), LauncherConfig(http_port=9000))
    argv = [a for group in settings for a in config.to_argv(group)]
    assert "--dtype" not in argv  # defaults are left out
    parsed = launcher.parse_args(argv)
    assert tuple(config.from_namespace(type(group), parsed) for group in settings) == settings
    serving = ServingConfig(auto_truncate=False, max_request_items=3)
    back = cli.huggingface_parser().parse_args(config.to_argv(serving))
    assert config.from_namespace(ServingConfig, back) == serving


def test_the_builder_takes_its_settings_as_json_on_stdin(tiny_models, tmp_path):
    settings = RepositoryConfig(model_name="tiny", repository_dir=tmp_path / "repo", onnx_backend="python",
                                model=ModelConfig(model_dir=tiny_models("text_embedding")),
                                execution=ExecutionConfig(device="cpu"),
                                batching=BatchingConfig(max_batch_size=4))
    result = subprocess.run([sys.executable, "-m", "hfserve.triton.repository", "--config", "-"],
                            input=settings.to_json(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["task"] == "text_embedding"
    assert "max_batch_size: 4" in (tmp_path / "repo" / "tiny" / "config.pbtxt").read_text()
    refused = subprocess.run([sys.executable, "-m", "hfserve.triton.repository", "--config", "-", "--task", "rerank"],
                             input=settings.to_json(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "no other option" in refused.stderr


def test_the_server_builds_its_middleware_from_the_serving_settings():
    from hfserve.serving.backpressure import ConcurrencyLimit
    from hfserve.serving.server import HFModelServer

    options = cli.server_options(cli.huggingface_parser().parse_args(["--max_concurrent_requests", "3",
                                                                       "--bind_address", "127.0.0.1"]))
    assert set(options) == {"http_port", "grpc_port", "workers", "serving", "container"}
    server = HFModelServer(**options)
    limits = [options for middleware, options in server.middlewares if middleware is ConcurrencyLimit]
    assert len(limits) == 1 and limits[0]["slots"].limit == 3 and limits[0]["slots"] is server.slots  # gRPC's too
    assert server.bind_address == "127.0.0.1" and server.max_request_bytes == 1 << 20


def test_model_settings_come_from_the_groups(tiny_models):
    args = cli.huggingface_parser().parse_args(["--model_name", "m", "--model_dir", str(tiny_models("fill_mask")),
                                                "--disable_lower_case", "--max_length", "16", "--trust_remote_code",
                                                "--auto_truncate", "false", "--max_request_items", "5"])
    settings = cli.model_settings(args)
    assert settings.task.value == "fill_mask" and settings.model_name == "m"
    assert (settings.tokenizer.lower_case, settings.tokenizer.add_special_tokens) == (False, True)
    assert (settings.tokenizer.max_length, settings.tokenizer.trust_remote_code) == (16, True)
    assert (settings.auto_truncate, settings.max_request_items) == (False, 5)


def test_the_launcher_does_not_import_torch():
    """The long-lived supervisor and its settings stay torch-free (the builder child imports torch)."""
    code = ("import sys; import hfserve.triton.__main__ as m; m.parse_args(['--model_name', 'x', '--model_dir', '/x']);"
            "print(sorted(k for k in ('torch', 'transformers') if k in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
