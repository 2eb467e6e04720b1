"""The load-test tooling: the corpus mix, the CSV reading, the thresholds and the plot, and one
short real `make load`-style run against runtime 1 on a loopback port."""

from __future__ import annotations

import contextlib
import csv
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import corpus, report

REPO = Path(__file__).resolve().parents[1]

HEADER = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time", "Average Response Time",
          "Min Response Time", "Max Response Time", "Average Content Size", "Requests/s", "Failures/s",
          "50%", "66%", "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]
HISTORY = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%", "75%", "80%",
           "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%", "Total Request Count", "Total Failure Count",
           "Total Median Response Time", "Total Average Response Time", "Total Min Response Time",
           "Total Max Response Time", "Total Average Content Size"]


def write_csvs(prefix: Path, requests=100, failures=0, p99=250):
    with open(f"{prefix}_stats.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow(["POST", "v1 predict", requests, failures, 40, 50, 5, p99, 9000, 20.0, 0.0,
                    40, 45, 50, 60, 80, 120, 200, p99, p99, p99, p99])
        w.writerow(["", "Aggregated", requests, failures, 40, 50, 5, p99, 9000, 20.0, failures / 5,
                    40, 45, 50, 60, 80, 120, 200, p99, p99, p99, p99])
    with open(f"{prefix}_stats_history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HISTORY)
        for t in range(6):
            total = 0 if t == 0 else t * 20
            lat = "0" if t == 0 else str(40 + t)
            w.writerow([1_700_000_000 + t, min(t * 2, 8), "", "Aggregated", 0 if t == 0 else 20, 0,
                        lat, lat, lat, lat, lat, lat, lat, "0" if t == 0 else str(200 + t), 0, 0, 0,
                        total, 0, 0, 0, 0, 0, 0])


def test_corpus_mixes_short_and_long_texts():
    rng = random.Random(7)
    texts = [corpus.sample_text(rng) for _ in range(2000)]
    words = [len(t.split()) for t in texts]
    assert sum(w <= 8 for w in words) > 800            # queries dominate
    assert sum(w >= 250 for w in words) >= 20          # a few long documents, past the 256-token window
    assert any(ord(c) > 127 for t in texts for c in t)  # non-ASCII text too
    batches = [corpus.sample_batch(rng, 8) for _ in range(500)]
    assert {len(b) for b in batches} == {1, 2, 4, 8}


def test_totals_and_thresholds(tmp_path):
    write_csvs(tmp_path / "ok", requests=100, failures=0, p99=250)
    totals = report.read_totals(tmp_path / "ok")
    assert (totals.requests, totals.failures, totals.p99_ms) == (100, 0, 250)
    assert report.check(totals, p99_ms=300) == []
    assert report.check(totals, p99_ms=200) == ["p99 250 ms > 200 ms"]

    write_csvs(tmp_path / "bad", requests=100, failures=1, p99=250)
    problems = report.check(report.read_totals(tmp_path / "bad"), p99_ms=1000)
    assert len(problems) == 1 and problems[0].startswith("error rate 1.00%")

    write_csvs(tmp_path / "none", requests=0, failures=0)
    assert "no requests were made" in report.check(report.read_totals(tmp_path / "none"), None)


def test_history_treats_no_answers_as_missing_not_zero(tmp_path):
    write_csvs(tmp_path / "h")
    h = report.read_history(tmp_path / "h")
    assert h["t"] == [0, 1, 2, 3, 4, 5]
    assert h["p99"][0] != h["p99"][0]  # NaN before the first answer
    assert h["p99"][1:] == [201, 202, 203, 204, 205]


def test_plot_writes_a_png(tmp_path):
    write_csvs(tmp_path / "p")
    png = report.plot(tmp_path / "p", tmp_path / "p.png", title="unit test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_report_cli_exit_status(tmp_path):
    write_csvs(tmp_path / "c", p99=900)
    assert report.main([str(tmp_path / "c"), "--p99-ms", "1000"]) == 0
    assert report.main([str(tmp_path / "c"), "--p99-ms", "500"]) == 1


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_short_load_run_against_runtime_1(tmp_path):
    """What `make load` does, shortened: runtime 1 + MiniLM on a free loopback port, 6 s of
    steady load over all three protocols, every response checked, reports and plot written."""
    # Its own process group, killed whole on timeout (locust included); the runtime it starts dies with it
    # (PR_SET_PDEATHSIG in ServerProcess). The timeout stays under this test's pytest-timeout, so pytest never
    # kills the test while the run is still up.
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.run", "--duration", "6", "--users", "2", "--p99-ms", "60000",
         "--out", str(tmp_path), "--name", "smoke"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=400)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-6000:]
    for name in ("smoke_stats.csv", "smoke_stats_history.csv", "smoke.html", "smoke.png", "smoke.md"):
        assert (tmp_path / name).stat().st_size > 0, name
    totals = report.read_totals(tmp_path / "smoke")
    assert totals.requests > 0 and totals.failures == 0
    assert "PASS" in (tmp_path / "smoke.md").read_text()


def test_engine_table_sets_each_served_row_against_the_peer_at_its_concurrency():
    from loadtests.bench import Row
    from loadtests.bench_engines import render

    peer = "infinity 0.0.78 [onnx]"
    rows = [Row("raw forward [onnx]", 8, 240.0, 30, 40), Row(peer, 8, 120.0, 60, 80),
            Row("kserve-huggingface [torch]", 8, 100.0, 70, 90, 4.0),
            Row("kserve-huggingface [onnx]", 8, 150.0, 50, 70, 4.0), Row(peer, 32, 200.0, 150, 200),
            Row("kserve-huggingface [onnx]", 32, 300.0, 100, 140, 16.0)]
    lines = {line.split(" | ")[0].lstrip("| ") + f"@{line.split(' | ')[1]}": line
             for line in render(rows, "uniform", peer).splitlines() if line.startswith("| ") and "---" not in line}
    assert lines["kserve-huggingface [onnx]@8"].endswith("| 1.50 | 1.25 |")  # vs torch, vs the peer
    assert lines["kserve-huggingface [onnx]@32"].endswith("| - | 1.50 |")  # no torch row at 32
    assert lines["raw forward [onnx]@8"].endswith("| - |")  # raw forwards are not set against a server
    assert "vs infinity" not in render(rows, "uniform")
