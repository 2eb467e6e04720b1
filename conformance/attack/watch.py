"""While a hostile case runs: a thread polls `/v2/health/live` and records every answer's latency, and, where the
pod's processes are local, another samples their summed RSS."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil

LIVENESS_LIMIT_S = 1.0   # issue 20: during any single hostile request, liveness answers within 1 s
POLL_EVERY_S = 0.1
RSS_EVERY_S = 0.25


@dataclass
class Figures:
    """What the watchers saw during one case."""

    samples: int = 0
    max_live_s: float = 0.0
    live_failures: list[str] = field(default_factory=list)   # non-200 answers or no answer within the timeout
    rss_base_mb: float | None = None
    rss_peak_mb: float | None = None

    @property
    def rss_growth_mb(self) -> float | None:
        if self.rss_base_mb is None or self.rss_peak_mb is None:
            return None
        return max(0.0, self.rss_peak_mb - self.rss_base_mb)


def pod_pids(control) -> set[int] | None:
    """Every process of a local (emulated) pod, or None where the pod's processes are not on this machine."""
    from conformance.pods.process import EmulatedPod

    if not isinstance(control, EmulatedPod):
        return None
    pids: set[int] = set()
    for name in control.container_names:
        try:
            pids |= control.pids(name)
        except Exception:  # noqa: BLE001 - a container that is not running has no processes
            pass
    return pids


def rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            pass
    return total / 1e6


class Watch:
    """Context manager: liveness (and RSS) watched from before the case starts until after it ends: the first
    liveness answer has come back before the case starts, and one more is taken after it ends (a stall still under
    way when the case returns shows there)."""

    def __init__(self, http_url: str, control=None, timeout_s: float = 5.0):
        self.http_url, self.timeout_s = http_url, timeout_s
        self.figures = Figures()
        self._pids = pod_pids(control) if control is not None else None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll_live, daemon=True)]
        if self._pids:
            self._threads.append(threading.Thread(target=self._sample_rss, daemon=True))
        self._first = threading.Event()

    def _poll_live(self) -> None:
        with httpx.Client(base_url=self.http_url, timeout=self.timeout_s) as http:
            while True:
                stopping = self._stop.is_set()
                start = time.monotonic()
                try:
                    status = http.get("/v2/health/live").status_code
                    if status != 200:
                        self.figures.live_failures.append(f"/v2/health/live answered {status}")
                except httpx.HTTPError as exc:
                    self.figures.live_failures.append(f"/v2/health/live: {type(exc).__name__} after "
                                                      f"{time.monotonic() - start:.2f} s")
                elapsed = time.monotonic() - start
                self.figures.samples += 1
                self.figures.max_live_s = max(self.figures.max_live_s, elapsed)
                self._first.set()
                if stopping:
                    return
                self._stop.wait(POLL_EVERY_S)

    def _sample_rss(self) -> None:
        while not self._stop.is_set():
            mb = rss_mb(self._pids)
            self.figures.rss_peak_mb = max(self.figures.rss_peak_mb or 0.0, mb)
            self._stop.wait(RSS_EVERY_S)

    def __enter__(self) -> Watch:
        if self._pids:
            self.figures.rss_base_mb = rss_mb(self._pids)
        for thread in self._threads:
            thread.start()
        self._first.wait(self.timeout_s + 1)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        if self._pids:
            self.figures.rss_peak_mb = max(self.figures.rss_peak_mb or 0.0, rss_mb(self._pids))
