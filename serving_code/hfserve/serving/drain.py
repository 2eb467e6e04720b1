"""Draining for rolling updates (why and how long: hfserve/drain_delay.py). On SIGTERM: readiness turns false at
once, the server keeps accepting and serving for `delay_s`, then stops accepting; requests in flight finish within
uvicorn's graceful-shutdown period.

Nothing accepted is dropped without an answer, which uvicorn alone does not promise:
- from the start of the drain every response says `connection: close` (`CloseWhenDraining`), so keep-alive clients
  reconnect, through the Service, to a ready pod while this one still accepts: nothing they use is left idle here
  when the listener closes (Go's net/http turns keep-alives off during Shutdown the same way);
- at the end of the delay the listeners close first, then connections accepted but whose request has not arrived
  yet get up to `ACCEPT_GRACE_S` to deliver it, and only then does uvicorn close idle connections (its shutdown
  treats a connection with no request yet as idle and closes it, so a request sent just after the accept was lost;
  Go's closeIdleConns keeps such `StateNew` connections for 5 s for the same reason).
What remains: a SYN still in the kernel's accept queue when the listener closes is reset; on a cluster the drain
delay is what keeps new connections away by then.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

from kserve.protocol.rest.server import _RefreshingServer

from ..drain_delay import default_delay_s

logger = logging.getLogger("hfserve")

# How long a connection accepted just before the listener closed may take to send its request.
ACCEPT_GRACE_S = 1.0


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

    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + ACCEPT_GRACE_S
        while any(_awaiting_first_request(c) for c in self.server_state.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await super().shutdown(sockets)

    def _stop_accepting(self, sig) -> None:
        if not self.should_exit:
            logger.info("drain delay over: no new connections; requests in flight finish")
            super().handle_exit(sig, None)


def _awaiting_first_request(connection) -> bool:
    """Accepted, open, and no request started on it yet (uvicorn's protocols: `cycle` is None until the first one)."""
    transport = getattr(connection, "transport", None)
    return getattr(connection, "cycle", False) is None and transport is not None and not transport.is_closing()


class CloseWhenDraining:
    """ASGI middleware: once the drain has begun, every HTTP response carries `connection: close`."""

    def __init__(self, app, drain: DrainState):
        self.app, self.drain = app, drain

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start" and self.drain.draining:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
