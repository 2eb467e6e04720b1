"""`helm lint --strict` through Helm's own Go SDK (PyPI helm-python-sdk), with the values of every
ci/*-values.yaml scenario, and the schema's error messages for bad values."""

from __future__ import annotations

import helm_python
import pytest

from .chartlib import CHART, render
from .kserve_matrix import scenarios

SCENARIOS = {s.name: s.values or None for s in scenarios()}


def _problems(report: dict) -> list[str]:
    # severity: 1 info, 2 warning, 3 error; --strict fails on warnings too
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_lint_strict(name):
    report = helm_python.lint(str(CHART), SCENARIOS[name], strict=True)
    assert report["total_charts_linted"] == 1
    assert _problems(report) == []


BAD_VALUES = [
    ({"huggingface": {"gpu": "two"}}, "/huggingface/gpu", "want integer"),
    ({"huggingface": {"gpu": -1}}, "/huggingface/gpu", "minimum"),
    ({"huggingface": {"args": {"dtype": "float8"}}}, "/huggingface/args/dtype", "must be one of 'auto'"),
    ({"huggingface": {"args": {"maxLength": "512"}}}, "/huggingface/args/maxLength", "want integer"),
    ({"huggingface": {"image": {"pullPolicy": "Sometimes"}}}, "/huggingface/image/pullPolicy", "must be one of"),
    ({"huggingface": {"image": {"digest": "latest"}}}, "/huggingface/image/digest", "latest"),
    ({"huggingface": {"imagee": {}}}, "/huggingface", "additional properties 'imagee' not allowed"),
    ({"huggingface": {"enabled": "yes"}}, "/huggingface/enabled", "want boolean"),
    ({"huggingface": {"extraArgs": "--foo"}}, "/huggingface/extraArgs", "want array"),
    ({"huggingface": {"httpPort": 70000}}, "/huggingface/httpPort", "maximum"),
    ({"huggingface": {"protocolVersions": ["v3"]}}, "/huggingface/protocolVersions/0", "must be one of 'v1'"),
    ({"triton": {"tokenizerSource": "s3"}}, "/triton/tokenizerSource", "must be one of 'export', 'modelMount'"),
    ({"triton": {"args": {"preferredBatchSizes": "8,16"}}}, "/triton/args/preferredBatchSizes", "want array"),
    ({"triton": {"server": {"gpu": 1.5}}}, "/triton/server/gpu", "got number, want integer"),
    ({"modelFormat": {"version": 1}}, "/modelFormat/version", "want string"),
    ({"scratch": {"tmpSizeLimit": "lots"}}, "/scratch/tmpSizeLimit", "lots"),
]


@pytest.mark.parametrize("values,where,what", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_schema_rejects_bad_values(values, where, what):
    with pytest.raises(helm_python.HelmError) as info:
        render(values)
    message = str(info.value)
    assert "values don't meet the specifications of the schema" in message
    assert where in message and what in message, message
    report = helm_python.lint(str(CHART), values, strict=True)
    assert any(where in p for p in _problems(report)), report


def test_default_values_documented_types_are_stable():
    # every default passes the schema without Helm too (guards the JSON file itself)
    import json

    import jsonschema
    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
