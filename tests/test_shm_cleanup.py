"""Stale /dev/shm segments (security review L5): the launcher removes those of dead launches before it starts
Triton, and stopping an emulated pod removes what its Triton left; live launchers' segments and names that are not
ours are never touched. Real files in the real /dev/shm, real processes for the pids."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hfserve.triton.supervisor import SHM_DIR, stale_segments

from conformance.chart import build_pod
from conformance.pods.process import EmulatedPod

if not SHM_DIR.is_dir():
    pytest.fail("/dev/shm is missing: the Triton runtime needs it", pytrace=False)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def segments():
    made: list[Path] = []

    def make(name: str) -> Path:
        path = SHM_DIR / name
        path.write_bytes(b"\0" * 64)
        made.append(path)
        return path

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def test_only_our_segments_of_dead_launchers_are_stale(segments, live_process):
    dead = segments(f"hfserve_triton_{dead_pid()}_0a1b2c3d_stub_0")
    live = segments(f"hfserve_triton_{live_process.pid}_0a1b2c3d_stub_0")
    foreign = segments(f"other_app_{dead_pid()}_segment")
    malformed = segments("hfserve_triton_notapid_0a1b2c3d_x")
    found = stale_segments()
    assert dead in found
    assert live not in found and foreign not in found and malformed not in found


def test_the_launcher_counts_its_own_pid_as_a_dead_launch(segments, live_process):
    """A restarted container's launcher usually has its predecessor's pid; it has made no segment yet."""
    script = ("import os, sys; from pathlib import Path; from hfserve.triton.supervisor import remove_stale_segments;"
              "own = Path('/dev/shm') / f'hfserve_triton_{os.getpid()}_00ff00ff_stub'; own.write_bytes(b'x');"
              "removed = remove_stale_segments(own_pid_is_stale=True); print(own in removed, own.exists())")
    live = segments(f"hfserve_triton_{live_process.pid}_00ff00ff_stub")
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert answer.stdout.split() == ["True", "False"], answer.stderr
    assert live.exists()


def test_stopping_an_emulated_triton_pod_removes_its_leftover_segments(segments, live_process, tiny_models):
    dead = segments(f"hfserve_triton_{dead_pid()}_0badcafe_stub_0")
    live = segments(f"hfserve_triton_{live_process.pid}_0badcafe_stub_0")
    manifest = build_pod("kserve-huggingface-triton", "tiny", None)
    work_dir = Path(tempfile.mkdtemp(prefix="pod-shm-"))
    pod = EmulatedPod("kserve-huggingface-triton", manifest, str(tiny_models("text_embedding")), "tiny", None,
                      work_dir, keep_work_dir=False, isolate=False, run_as=None)
    pod.stop(grace=1)
    assert not dead.exists()
    assert live.exists()
    assert not work_dir.exists()
