"""Run tritonserver as a supervised child: own its process group, drain it cleanly, leave nothing behind.

Facts this is built on (Triton 2.51, Python backend):
- Each model instance runs in a `triton_python_backend_stub` child process in Triton's process group. When
  tritonserver is SIGKILLed under load, the busy stub survives (it ignores SIGTERM) and keeps its `/dev/shm`
  segment: so we start Triton as the leader of a new process group, SIGKILL the whole group once Triton is gone,
  and remove the shared-memory segments carrying our own prefix (set with
  `--backend-config=python,shm-region-prefix-name=...`).
- On SIGTERM Triton keeps accepting new requests until every model is idle or its exit timeout expires (and
  under load it then crashed with signal 11). So a drain first UNLOADS the model through the model-repository API:
  Triton finishes the requests in flight (queued ones included), refuses new ones at once (NOT_FOUND "unknown
  model", which clients map to "unavailable"), and once the model is gone a SIGTERM exits in about a second.
  The repository API is restricted to a per-launch secret header, so nobody else can load or unload models.
"""

from __future__ import annotations

import ctypes
import glob
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger("hfserve.triton")

ADMIN_HEADER = "hfserve-admin"
SHM_DIR = Path("/dev/shm")
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        pass


def exit_status(returncode: int | None) -> int:
    """Shell-style exit status for a child's Popen returncode (negative = killed by signal)."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


def shm_segments(prefix: str) -> list[Path]:
    return [Path(p) for p in glob.glob(str(SHM_DIR / (glob.escape(prefix) + "*")))]


# new_identity's prefix: the launcher's pid, then random hex
SHM_NAME_RE = re.compile(r"^hfserve_triton_(\d+)_[0-9a-f]+_")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_segments(shm_dir: Path = SHM_DIR, own_pid_is_stale: bool = False) -> list[Path]:
    """Our segments whose launcher is gone (security review L5): an OOM-killed or SIGKILLed container leaves its
    Python-backend segments in the pod's memory-backed /dev/shm, where they count against its memory. Only names
    with our prefix; a live launcher's are kept. In a container the restarted launcher often gets the dead one's pid
    (pid namespaces restart at 1), so the launcher, which has made none of its own yet, counts its own pid as gone."""
    found = []
    for path in Path(shm_dir).glob("hfserve_triton_*"):
        match = SHM_NAME_RE.match(path.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if (own_pid_is_stale and pid == os.getpid()) or not _alive(pid):
            found.append(path)
    return found


def remove_stale_segments(shm_dir: Path = SHM_DIR, own_pid_is_stale: bool = False) -> list[Path]:
    removed = []
    for segment in stale_segments(shm_dir, own_pid_is_stale):
        try:
            segment.unlink()
            removed.append(segment)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove stale shared memory %s: %s", segment, exc)
    if removed:
        log.info("removed %d stale shared-memory segments of earlier launches", len(removed))
    return removed


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc."""
    pids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.split("/")[2]))
    return pids


class TritonProcess:
    def __init__(self, command: list[str], env: dict[str, str], http_url: str, model_name: str,
                 shm_prefix: str, admin_token: str, exit_timeout_s: float):
        self.command = command
        self.env = env
        self.http_url = http_url.rstrip("/")
        self.model_name = model_name
        self.shm_prefix = shm_prefix
        self.admin_token = admin_token
        self.exit_timeout_s = exit_timeout_s
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None

    @staticmethod
    def new_identity() -> tuple[str, str]:
        """(shared-memory prefix, admin token) unique to this launch."""
        return f"hfserve_triton_{os.getpid()}_{secrets.token_hex(4)}_", secrets.token_urlsafe(24)

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.command, env=self.env, start_new_session=True,
                                     preexec_fn=_set_parent_death_signal)
        log.info("started tritonserver pid %d", self.proc.pid)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def _get(self, path: str, timeout: float = 1.0) -> int:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, ValueError):
            return 0

    def is_ready(self) -> bool:
        return self._get(f"/v2/models/{self.model_name}/ready") == 200

    def check_ready(self) -> bool:
        """Polled by the supervising loop; logs the time to ready once."""
        if self.ready_at is None and self.is_ready():
            self.ready_at = time.monotonic()
            log.info("triton model %s ready %.2f s after start", self.model_name, self.ready_at - self.started_at)
        return self.ready_at is not None

    def backend_workers(self) -> set[int]:
        """Live processes of Triton's group other than tritonserver itself: the Python-backend stubs."""
        return {pid for pid in group_pids(self.pid) if pid != self.pid} if self.proc is not None else set()

    def unload(self) -> bool:
        request = urllib.request.Request(
            f"{self.http_url}/v2/repository/models/{self.model_name}/unload", data=b"{}", method="POST",
            headers={ADMIN_HEADER: self.admin_token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=2.0) as response:
                return response.status == 200
        except (OSError, ValueError) as exc:
            log.warning("could not unload %s for the drain: %s", self.model_name, exc)
            return False

    def _model_gone(self) -> bool:
        # The unload call returns at once; the model stays in the index as UNLOADING until in-flight work is done.
        request = urllib.request.Request(f"{self.http_url}/v2/repository/index", data=b'{"ready": false}',
                                         method="POST", headers={ADMIN_HEADER: self.admin_token})
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:
                index = json.loads(response.read() or b"[]")
        except (OSError, ValueError):
            return self.poll() is not None
        return not any(m.get("name") == self.model_name and m.get("state") in ("READY", "UNLOADING", "LOADING")
                       for m in index)

    def _inferences_so_far(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/models/{self.model_name}/stats", timeout=1.0) as reply:
                stats = json.loads(reply.read())
        except (OSError, ValueError):
            return None
        return sum(int(m.get("inference_count", 0)) for m in stats.get("model_stats", []))

    def wait_until_quiet(self, quiet_s: float, longest_s: float) -> None:
        """Keep serving until no inference has arrived for `quiet_s` (at most `longest_s`).

        In a pod, SIGTERM reaches the transformer and Triton together: the transformer drains its own in-flight
        requests, which still need Triton. Unloading at once would refuse them.
        """
        deadline = time.monotonic() + longest_s
        last = self._inferences_so_far()
        quiet_since = time.monotonic()
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            now = self._inferences_so_far()
            if now != last:
                last, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return

    def drain(self, quiet_s: float = 1.0, delay_s: float = 0.0) -> int:
        """Serve for `delay_s` (the pod leaves the endpoints meanwhile) and until traffic stops, finish in-flight
        requests, refuse new ones, stop Triton; Triton's status."""
        if self.poll() is None and delay_s > 0:
            log.info("draining: serving for %.1f s while the pod leaves the endpoints", delay_s)
            end = time.monotonic() + delay_s
            while self.poll() is None and time.monotonic() < end:
                time.sleep(0.1)
        deadline = time.monotonic() + self.exit_timeout_s
        if self.poll() is None and quiet_s > 0:
            log.info("draining: serving until no request has arrived for %.1f s", quiet_s)
            self.wait_until_quiet(quiet_s, longest_s=self.exit_timeout_s / 2)
        if self.poll() is None:
            log.info("draining: unloading model %s (in-flight requests finish, new ones are refused)",
                     self.model_name)
            if self.unload():
                while self.poll() is None and time.monotonic() < deadline and not self._model_gone():
                    time.sleep(0.1)
            if self.poll() is None:
                log.info("draining: stopping tritonserver (SIGTERM)")
                self._signal_leader(signal.SIGTERM)
            try:
                self.proc.wait(timeout=max(1.0, deadline - time.monotonic()) + 5.0)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in time; killing its process group")
        return self.stop()

    def _signal_leader(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill_group(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> int:
        """SIGKILL whatever is left of Triton's process group, reap it, remove our shared memory; exit status."""
        if self.proc is None:
            return 0
        self.kill_group()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # Stubs are not our children: wait for the kernel to finish them so their segments are really unused.
        deadline = time.monotonic() + 5.0
        while group_pids(self.pid) and time.monotonic() < deadline:
            self.kill_group()
            time.sleep(0.05)
        for segment in shm_segments(self.shm_prefix):
            try:
                segment.unlink()
                log.info("removed leftover shared memory %s", segment)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", segment, exc)
        return exit_status(self.proc.returncode)
