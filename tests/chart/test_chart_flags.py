"""Every `--flag` the chart renders is an option of the parser that the container's module generates from
hfserve.config, and the rendered arguments parse and pass the settings' rules: under every ci/*-values.yaml
scenario, and with every optional value of the templates turned on. The chart and the command lines cannot drift
apart unnoticed."""

from __future__ import annotations

import importlib

import pytest
from hfserve import config

from .chartlib import render
from .kserve_matrix import scenarios

# What KServe puts in place of the placeholder: the InferenceService's name.
MODEL_NAME = "my-model"

# Every optional branch of the two templates (flags rendered only when a value is set).
EVERYTHING_ON = {
    "huggingface": {"args": {"task": "text_embedding", "maxLength": 128, "disableLowerCase": True,
                             "disableSpecialTokens": True, "returnProbabilities": True, "trustRemoteCode": True,
                             "engine": "onnx", "device": "cpu"},
                    "extraArgs": ["--max_batch_tokens=4096", "--request_timing_logs"]},
    "triton": {"args": {"task": "text_embedding", "maxLength": 128, "disableLowerCase": True,
                        "disableSpecialTokens": True, "returnProbabilities": True, "trustRemoteCode": True,
                        "exitTimeoutSeconds": 5, "engine": "onnx"},
               "server": {"extraArgs": ["--onnx_backend=python", "--drain_quiet_s=2"]},
               "transformer": {"extraArgs": ["--max_concurrent_requests=64"]}},
}

CASES = {s.name: s.values or None for s in scenarios()} | {"everything-on": EVERYTHING_ON}


def container_parse(module: str):
    """(parser, groups) of `python -m <module>` as its own __main__ builds them."""
    main = importlib.import_module(f"{module}.__main__")
    groups = {"hfserve.huggingface": config.HUGGINGFACE_GROUPS, "hfserve.transformer": config.TRANSFORMER_GROUPS,
              "hfserve.triton": config.LAUNCHER_GROUPS}[module]
    return main.build_parser(), groups


def containers(objects):
    for obj in objects:
        if obj.get("kind") == "ClusterServingRuntime":
            for c in obj["spec"]["containers"]:
                yield f"{obj['metadata']['name']}/{c['name']}", c


@pytest.fixture(scope="module")
def rendered():
    return {name: render(values) for name, values in CASES.items()}


def test_every_template_branch_is_rendered(rendered):
    flags = {a.split("=", 1)[0] for _, c in containers(rendered["everything-on"]) for a in c["args"]}
    assert {"--task", "--max_length", "--disable_lower_case", "--disable_special_tokens", "--return_probabilities",
            "--trust_remote_code", "--exit_timeout_s", "--tokenizer_export_dir"} <= flags


def problems(objects) -> list[str]:
    """What is wrong with the rendered containers' arguments; also counts the flags checked."""
    found, checked = [], 0
    for where, c in containers(objects):
        module = c["command"][-1]
        parser, groups = container_parse(module)
        known = {s for a in parser._actions for s in a.option_strings}
        args = [a.replace("{{.Name}}", MODEL_NAME) for a in c["args"]]
        flags = [a.split("=", 1)[0] for a in args if a.startswith("--")]
        checked += len(flags)
        unknown = sorted(set(flags) - known)
        if unknown:
            found.append(f"{where} renders {unknown}, which `python -m {module}` does not have")
            continue
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            found.append(f"{where}: `python -m {module}` refuses {args}")
            continue
        try:
            config.validate(*(config.from_namespace(group, parsed) for group in groups))
        except config.ConfigError as exc:
            found.append(f"{where}: {exc}")
    return found if checked > 20 else [f"only {checked} flags rendered"]


@pytest.mark.parametrize("case", list(CASES))
def test_every_rendered_flag_exists_in_its_containers_generated_parser(rendered, case):
    assert problems(rendered[case]) == []


def test_the_check_catches_a_flag_the_parser_lacks_and_a_broken_rule(capsys):
    misspelt = problems(render({"huggingface": {"extraArgs": ["--max_batch=4"]}}))  # a prefix of --max_batch_size
    assert any("['--max_batch']" in p and "kserve-huggingface/kserve-container" in p for p in misspelt), misspelt
    broken = problems(render({"triton": {"server": {"extraArgs": ["--quantize=int8"]}}}))
    assert any("needs --engine onnx" in p for p in broken), broken
    bad_value = problems(render({"triton": {"transformer": {"extraArgs": ["--max_request_items=0"]}}}))
    assert any("refuses" in p and "transformer-container" in p for p in bad_value), bad_value
