"""The conformance suite's executed-test floors (conformance/reporting.py, Target.floor and group_floors): a run
that loses one group fails, and every target's floors fit what that target selects today."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance.reporting import ExecutedFloor
from conformance.targets.cluster import ClusterTarget
from conformance.targets.local import LocalTarget, PodsTarget
from conformance.targets.url import UrlTarget

REPO = Path(__file__).resolve().parents[1]

COUNTER = textwrap.dedent('''
    import collections, json, os
    from conformance.reporting import group_of

    def pytest_collection_finish(session):
        counts = collections.Counter(group_of(item.keywords) for item in session.items
                                     if not item.get_closest_marker("skip") and not item.get_closest_marker("gpu"))
        with open(os.environ["GROUP_COUNTS"], "w") as out:
            json.dump(counts, out)
''')


class _Config:
    """What ExecutedFloor reads of pytest's config, for a full run (`pytest conformance`)."""

    def __init__(self, target: str, **option):
        self.args = [str(REPO / "conformance")]
        self.option = SimpleNamespace(**({"markexpr": "", "keyword": "", "deselect": None} | option))
        self._options = {"--min-executed": None, "--target": target}

    def getoption(self, name):
        return self._options[name]


def _floor_with(target, executed: dict[str, int], **option) -> list[str]:
    floor = ExecutedFloor(_Config(target.name, **option), lambda: target)
    floor.executed.update(executed)
    return floor.shortfalls()


def test_losing_one_group_fails_a_full_run_even_above_the_total_floor():
    target = LocalTarget()
    try:
        today = {"attack": 44, "bad_input": 88, "batching": 2, "degradation": 4, "hf_inference": 13, "limits": 18, "openai": 12,
                 "parity": 5, "tasks": 27, "tei": 11, "v1": 12, "v2_grpc": 10, "v2_rest": 12}
        assert _floor_with(target, today) == []
        # the audit's M3 case: openai and tritonclient.grpc missing, 192 tests still above the total floor
        lost = today | {"openai": 0, "v2_grpc": 0}
        assert sum(lost.values()) > target.floor
        messages = _floor_with(target, lost)
        assert len(messages) == 2 and "'openai' executed 0" in messages[0] and "'v2_grpc'" in messages[1]
        # a subset (-m v1) needs one executed test, whatever the groups
        assert _floor_with(target, {"v1": 1}, markexpr="v1") == []
        assert "only 0 tests executed, below the floor of 1" in _floor_with(target, {}, markexpr="v1")[0]
    finally:
        target.close()


def test_pods_have_their_own_floor_not_the_urls():
    assert PodsTarget.floor >= 180 > UrlTarget.floor
    assert PodsTarget.group_floors["pods"] >= 1
    assert "tasks" not in PodsTarget.group_floors and "pods" not in LocalTarget.group_floors


@pytest.mark.parametrize("target,cls", [("local", LocalTarget), ("pods", PodsTarget),
                                        ("http://127.0.0.1:9", UrlTarget)], ids=["local", "pods", "url"])
def test_floors_fit_what_each_target_selects(tmp_path, target, cls):
    (tmp_path / "group_counter.py").write_text(COUNTER)
    counts = tmp_path / "counts.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]), "GROUP_COUNTS": str(counts)}
    done = subprocess.run([sys.executable, "-m", "pytest", "conformance", "--collect-only", "-q", "-p", "group_counter",
                           "-p", "no:cacheprovider", "--target", target, "--reports-dir", str(tmp_path / "reports")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    selected = json.loads(counts.read_text())
    assert sum(selected.values()) >= cls.floor, selected
    for group, floor in cls.group_floors.items():
        assert selected.get(group, 0) >= floor, (group, selected)


def test_cluster_floors_cover_the_protocol_groups():
    assert set(ClusterTarget.group_floors) >= {"v1", "v2_rest", "v2_grpc", "openai", "bad_input"}
