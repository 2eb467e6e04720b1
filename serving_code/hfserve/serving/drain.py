"""Draining for rolling updates. Kubernetes takes a terminating pod out of its Service's endpoints some time after
it sends SIGTERM (the endpoint controller and every node's proxy must catch up), so requests keep arriving for a
while. On SIGTERM: readiness turns false at once, the server keeps accepting and serving for `delay_s`, then stops
accepting; requests in flight finish within uvicorn's graceful-shutdown period.

Under Knative (K_SERVICE is set in the container) the queue-proxy already holds the container's SIGTERM back until it
has drained (Knative's revision reconciler gives the user container a preStop hook that waits on the queue-proxy),
so the default delay there is 0: the two waits would add up.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from kserve.protocol.rest.server import _RefreshingServer

logger = logging.getLogger("hfserve")

DEFAULT_DELAY_S = 5.0


def default_delay_s() -> float:
    return 0.0 if os.environ.get("K_SERVICE") else DEFAULT_DELAY_S


class DrainState:
    def __init__(self, delay_s: float | None):
        self.delay_s = default_delay_s() if delay_s is None else max(0.0, delay_s)
        self.draining = False
        self.since: float | None = None

    def begin(self) -> None:
        if not self.draining:
            self.draining, self.since = True, time.monotonic()


class DrainingServer(_RefreshingServer):
    """uvicorn server whose first SIGTERM starts a drain instead of closing the listening socket at once."""

    def __init__(self, config, drain: DrainState):
        super().__init__(config)
        self.drain = drain
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig, frame) -> None:
        first = not self.drain.draining
        self.drain.begin()
        if first and sig == signal.SIGTERM and self.drain.delay_s > 0:
            logger.info("SIGTERM: readiness is false; serving for %.1f s more, then no new connections",
                        self.drain.delay_s)
            self._timer = threading.Timer(self.drain.delay_s, self._stop_accepting, args=(sig,))
            self._timer.daemon = True
            self._timer.start()
            return
        if self._timer is not None:
            self._timer.cancel()
        super().handle_exit(sig, frame)

    def _stop_accepting(self, sig) -> None:
        if not self.should_exit:
            logger.info("drain delay over: no new connections; requests in flight finish")
            super().handle_exit(sig, None)
