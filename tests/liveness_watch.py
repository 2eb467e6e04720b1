"""A liveness watcher for tests of hostile or huge requests: a thread that polls GET /v2/health/live back to back
(every `period_s`) while a request runs, and records how long each answer took. An event loop stalled for D
seconds shows as one poll taking about D (sent just as the stall began), so `slowest` bounds every stall longer
than the polling period."""

from __future__ import annotations

import json
import threading
import time

import httpx


class LivenessWatch:
    def __init__(self, base_url: str, period_s: float = 0.05, timeout_s: float = 30.0):
        self.url = f"{base_url}/v2/health/live"
        self.period_s = period_s
        self.timeout_s = timeout_s
        self.answers: list[tuple[int | None, float]] = []  # (status, seconds); None: no answer within timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get(self.url).status_code
                except httpx.HTTPError:
                    status = None
                self.answers.append((status, time.perf_counter() - started))
                self._stop.wait(self.period_s)

    def __enter__(self) -> "LivenessWatch":
        self._thread.start()
        deadline = time.monotonic() + self.timeout_s
        while not self.answers:  # polling has begun before the request is sent
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url} never answered")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    @property
    def slowest(self) -> float:
        return max(seconds for _, seconds in self.answers)

    def assert_live_within(self, bound_s: float) -> None:
        failed = [a for a in self.answers if a[0] != 200]
        assert not failed, f"liveness failed during the request: {failed[:5]}"
        assert self.slowest < bound_s, (f"liveness took {self.slowest:.2f} s during the request "
                                        f"({len(self.answers)} polls)")


HUGE = ["word " * 16_000] * 64  # the review's 64 texts of 16k words: 5 MiB, a million words
LIVE_S = 1.0  # the longest a liveness answer may take during any single request


def post(url: str, path: str, body: dict | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}{path}", content=content, headers={"content-type": "application/json"}, timeout=300)
