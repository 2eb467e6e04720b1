"""Schema-driven fuzzing of the HTTP surface (schemathesis + hypothesis) against the OpenAPI schema that runtime 1
publishes. Every operation gets generated requests, with the served model's name pinned in the paths so the
requests reach the model instead of stopping at 404. Nothing may answer 5xx or hang; client errors are 4xx JSON
with an `error` string; the server keeps serving.

Bounded: FUZZ_EXAMPLES generated cases per operation (default 25, about 20 operations), deterministic
(derandomized), no shrinking beyond hypothesis' default on failure. The count of cases run is printed and
written to reports/fuzz/summary.json.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis  # pinned in requirements/dev.txt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import served

# kserve's V1 routes declare no body schema: their bodies come from this strategy (any JSON, and V1-shaped JSON
# with odd instances)
FINITE = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity
JSON = st.recursive(st.none() | st.booleans() | st.integers() | FINITE | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
                    max_leaves=20)
V1_BODIES = JSON | st.fixed_dictionaries({"instances": st.lists(JSON, max_size=4)}, optional={"parameters": JSON})

REPO = Path(__file__).resolve().parents[1]
MODEL = "embed"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
REQUEST_TIMEOUT_S = 30.0


def test_the_fuzzer_is_installed():
    assert schemathesis.__version__ == "4.32.5"


server = served("text_embedding", MODEL)  # shared: the served name may be another module's (tests read it)


def pinned_schema(raw: dict, model: str) -> dict:
    """The schema with {model_name} replaced by the served model's name in every path, and the OpenAI bodies'
    `model` field fixed to it."""
    raw = copy.deepcopy(raw)
    paths = {}
    for path, item in raw["paths"].items():
        item = copy.deepcopy(item)
        for operation in [item] + [v for v in item.values() if isinstance(v, dict)]:
            if "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"]
                                           if not (p.get("in") == "path" and p.get("name") == "model_name")]
        paths[path.replace("{model_name}", model)] = item
    raw["paths"] = paths
    for component in raw.get("components", {}).get("schemas", {}).values():
        if "model" in component.get("properties", {}):
            component["properties"]["model"] = {"type": "string", "enum": [model]}
    return raw


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fuzz_every_operation(server, record_property):
    raw = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(pinned_schema(raw, server.model_name))
    statuses: Counter = Counter()
    problems: list[str] = []
    per_operation: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        count = 0

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            nonlocal count
            count += 1
            try:
                response = case.call(base_url=server.url, timeout=REQUEST_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a hang (timeout) or a dropped connection is a finding
                problems.append(f"{operation.label}: {type(exc).__name__}: {exc}")
                return
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                problems.append(f"{operation.label}: {response.status_code} {response.text[:200]} for "
                                f"{case.path_parameters} {case.query} {str(case.body)[:200]}")
            elif response.status_code >= 400:
                try:
                    error = response.json().get("error")
                except ValueError:
                    error = None
                if isinstance(error, dict):
                    error = error.get("message")  # OpenAI's error shape (/openai/..., /v1/rerank)
                if not isinstance(error, str):
                    problems.append(f"{operation.label}: {response.status_code} without a JSON error: "
                                    f"{response.text[:200]}")

        run()
        per_operation[operation.label] = count

    def check(label: str, response: httpx.Response) -> None:
        statuses[response.status_code] += 1
        if response.status_code >= 500 or (response.status_code >= 400 and
                                           not isinstance(response.json().get("error"), str)):
            problems.append(f"{label}: {response.status_code} {response.text[:200]}")

    for verb in ("predict", "explain"):
        label = f"POST /v1/models/{server.model_name}:{verb} (JSON bodies)"
        per_operation[label] = 0

        @given(body=V1_BODIES)
        @settings(max_examples=EXAMPLES * 2, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run_v1(body):
            per_operation[label] += 1
            try:
                check(label, httpx.post(f"{server.url}/v1/models/{server.model_name}:{verb}", json=body,
                                        timeout=REQUEST_TIMEOUT_S))
            except httpx.HTTPError as exc:
                problems.append(f"{label}: {type(exc).__name__}: {exc}")

        run_v1()
    took = time.monotonic() - started
    cases = sum(per_operation.values())
    summary = {"cases": cases, "operations": len(per_operation), "seconds": round(took, 1),
               "statuses": dict(sorted(statuses.items())), "per_operation": per_operation, "model": server.model_name,
               "examples_per_operation": EXAMPLES, "schemathesis": schemathesis.__version__}
    out = REPO / "reports" / "fuzz"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    record_property("fuzz_cases", cases)
    print("\nFUZZ", json.dumps(summary))
    assert not problems, "\n".join(problems[:20])
    assert len(per_operation) >= 15 and all(per_operation.values()), per_operation
    assert statuses[200] > 0, "no generated request reached the model"
    good = httpx.post(f"{server.url}/v1/models/{server.model_name}:predict", json={"instances": ["still here"]}, timeout=30)
    assert good.status_code == 200
