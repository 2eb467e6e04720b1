"""`make chaos` shortened to one minute of load (the default soak is five), and as long again as it takes until every
kind of fault has hit once: the chart's Triton pod under mixed V1/V2/OpenAI load while the seeded schedule of
faults hits it; the run itself asserts (see loadtests/chaos/judge.py: nothing lost, 200s served between faults,
every kind of fault injected) and this test checks that it passed and wrote its report. About 5-10 minutes on a
2-core runner (start-up, six faults and their recoveries, shutdown)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.chaos.judge import FAULTS, OK_OUTSIDE_FLOOR

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_one_minute_chaos_soak_loses_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "loadtests.chaos", "--minutes", "1", "--seed", "6",
                             "--out", str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=1400)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert proc.returncode == 0 and summary["passed"], (summary["problems"], output[-4000:])
    assert summary["requests"] > 50 and summary["lost"] == 0
    assert summary["fault_kinds"] == sorted(FAULTS) and summary["ok_outside_fault_windows"] >= OK_OUTSIDE_FLOOR
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
