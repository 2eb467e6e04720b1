"""Draining for rolling updates (why and how long: hfserve/drain_delay.py). On SIGTERM: readiness turns false at
once, the server keeps accepting and serving for `delay_s`, then stops accepting; requests in flight finish within
uvicorn's graceful-shutdown period."""

from __future__ import annotations

import logging
import signal
import threading
import time

from kserve.protocol.rest.server import _RefreshingServer

from ..drain_delay import default_delay_s

logger = logging.getLogger("hfserve")


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
