"""The chart's documentation and examples stay true: every value is documented in values.yaml
and in the README table, every example InferenceService is valid against the kserve models,
names a runtime the chart installs and is CPU or GPU as its name says."""

from __future__ import annotations

import re
import sys

import pytest
import yaml

from .chartlib import CHART, EXAMPLES, REPO, by_kind, render, validate_object

PARAM = re.compile(r"^\s*## @param (\S+) \S")


def _params() -> list[str]:
    return [m.group(1) for line in (CHART / "values.yaml").read_text().splitlines() if (m := PARAM.match(line))]


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else k)
    else:
        yield prefix


def test_every_value_is_documented():
    params = set(_params())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undocumented = []
    for leaf in _leaves(values):
        parts = leaf.split(".")
        if not any(".".join(parts[: i + 1]) in params for i in range(len(parts))):
            undocumented.append(leaf)
    assert undocumented == []
    for p in params:  # and every @param names a real value
        node = values
        for part in p.split("."):
            assert isinstance(node, dict) and part in node, f"@param {p} names no value"
            node = node[part]


def test_readme_values_table_lists_every_parameter():
    readme = (CHART / "README.md").read_text()
    missing = [p for p in _params() if f"| `{p}` |" not in readme]
    assert missing == [], "README.md's Parameters table is out of date"
    sys.path.insert(0, str(CHART.parent / "tools"))
    try:
        from values_table import table
    finally:
        sys.path.pop(0)
    assert table(CHART) in readme, "regenerate it: python charts/tools/values_table.py " + str(CHART.relative_to(REPO))


EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist_per_runtime_and_device():
    names = {p.stem for p in EXAMPLE_FILES}
    assert {"minilm-huggingface-cpu", "minilm-huggingface-gpu", "minilm-triton-cpu", "minilm-triton-gpu"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_is_a_valid_inference_service(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1
    isvc = docs[0]
    assert validate_object(isvc) == []
    runtimes = by_kind(render(), "ClusterServingRuntime")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] in runtimes
    fmt = runtimes[model["runtime"]]["spec"]["supportedModelFormats"][0]
    assert model["modelFormat"]["name"] == fmt["name"]
    assert model["storageUri"]
    limits = model.get("resources", {}).get("limits", {})
    if "-gpu" in path.stem:
        assert limits.get("nvidia.com/gpu") == "1"
    else:
        assert "nvidia.com/gpu" not in limits
    assert isvc["metadata"]["name"] == path.stem
