"""`make chaos` shortened to one minute of faults (the default soak is five): the Triton runtime pair under mixed
V1/V2/OpenAI load while seeded faults hit it; the run itself asserts (see loadtests/chaos.py) and this test checks
that it passed and wrote its report. About 3-5 minutes on a 2-core runner (start-up, one minute of faults, the
last recovery, shutdown)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert summary["requests"] > 50 and summary["fault_count"] >= 1 and summary["lost"] == 0
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
