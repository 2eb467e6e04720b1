"""Hostile traffic (`make attack TARGET=...`): every reproduction of the security review replayed against both
runtimes while /v2/health/live is watched. A case fails on a 5xx, an answer over its cap, a liveness answer slower
than 1 s, or (local target) the pod's RSS growing past the case's bound. The cases: conformance/attack/cases.py.

Figures (max liveness latency, RSS growth per case) go into the markdown report and reports/conformance/
attack-<target>.json. ATTACK_PENDING=1 also runs the cases whose fix is not in the tree yet (`Case.pending`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conformance.attack.cases import CASES, Case
from conformance.attack.watch import LIVENESS_LIMIT_S, Watch

pytestmark = pytest.mark.attack

RUN_PENDING = os.environ.get("ATTACK_PENDING", "") not in ("", "0")


def _cases(needs: str) -> list[Case]:
    return [c for c in CASES if c.needs == needs and (RUN_PENDING or not c.pending)]


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


@pytest.fixture(scope="session")
def attack_figures(request):
    figures: dict[str, dict] = {}
    yield figures
    if figures:
        from conformance.conftest import target_slug

        out = Path(request.config.getoption("--reports-dir"))
        out.mkdir(parents=True, exist_ok=True)
        slug = target_slug(request.config.getoption("--target"))
        (out / f"attack-{slug}.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")


def _attack(dep, case: Case, figures: dict, request) -> None:
    with Watch(dep.http_url, dep.control) as watch:
        start = time.monotonic()
        problems = case.run(dep)
        took = time.monotonic() - start
    seen = watch.figures
    figures[f"{case.id}[{dep.id}]"] = {
        "finding": case.finding, "seconds": round(took, 2), "liveness_samples": seen.samples,
        "max_liveness_s": round(seen.max_live_s, 3),
        "rss_growth_mb": None if seen.rss_growth_mb is None else round(seen.rss_growth_mb, 1),
        "rss_bound_mb": case.rss_bound_mb, "problems": problems[:10],
    }
    request.node.user_properties.append(("max_liveness_s", round(seen.max_live_s, 3)))
    if seen.rss_growth_mb is not None:
        request.node.user_properties.append(("rss_growth_mb", round(seen.rss_growth_mb, 1)))
    problems = list(problems) + seen.live_failures[:5]
    if seen.max_live_s > LIVENESS_LIMIT_S:
        problems.append(f"/v2/health/live took {seen.max_live_s:.2f} s during the case (limit {LIVENESS_LIMIT_S} s)")
    if seen.rss_growth_mb is not None and seen.rss_growth_mb > case.rss_bound_mb:
        problems.append(f"the pod's RSS grew {seen.rss_growth_mb:.0f} MB (bound {case.rss_bound_mb:.0f} MB: "
                        f"{seen.rss_base_mb:.0f} -> {seen.rss_peak_mb:.0f} MB)")
    assert not problems, f"{case.finding} {case.id} on {dep.id}:\n" + "\n".join(problems)


def _local_tiny(target, runtime: str, kind: str, runtimes: tuple[str, ...]):
    if target.kind != "local":
        pytest.skip(f"the tiny {kind} checkpoint is built on this machine: --target local only")
    target.local.needed.update(f"{r}-tiny-{kind}" for r in runtimes)  # the first get() starts them together
    return target.get(f"{runtime}-tiny-{kind}")


# A kind whose every case is pending defines no test (an empty parametrization would be a skipped test).
if _cases("minilm"):
    @pytest.mark.timeout(900)
    @pytest.mark.parametrize("case", _cases("minilm"), ids=_ids(_cases("minilm")))
    def test_minilm(minilm, case, attack_figures, request):
        _attack(minilm, case, attack_figures, request)

if _cases("fill_mask") + _cases("rerank"):
    @pytest.mark.timeout(900)
    @pytest.mark.parametrize("runtime", ["huggingface", "triton"])
    @pytest.mark.parametrize("case", _cases("fill_mask") + _cases("rerank"),
                             ids=_ids(_cases("fill_mask") + _cases("rerank")))
    def test_tiny_encoder(target, runtime, case, attack_figures, request):
        _attack(_local_tiny(target, runtime, case.needs, case.runtimes), case, attack_figures, request)

if _cases("generative"):
    @pytest.mark.timeout(900)
    @pytest.mark.parametrize("case", _cases("generative"), ids=_ids(_cases("generative")))
    def test_generative(generative, case, attack_figures, request):
        _attack(generative, case, attack_figures, request)

if _cases("triton"):
    @pytest.mark.timeout(900)
    @pytest.mark.parametrize("case", _cases("triton"), ids=_ids(_cases("triton")))
    def test_triton(triton_minilm, case, attack_figures, request):
        _attack(triton_minilm, case, attack_figures, request)
