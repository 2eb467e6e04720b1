"""Per-connection read and write deadlines (security review M2), which uvicorn does not have.

- Read: a request must arrive whole (request line, headers and body) within `read_timeout_s` of its first byte,
  and a new connection must deliver its first request within that time of being accepted. Past it the client gets
  408 with `connection: close` (if a request had begun and no response has started) and the connection is
  closed. A slowloris that
  trickles headers or a body therefore holds a connection for at most `read_timeout_s`, and never a backpressure
  slot (those are taken once the body is complete, serving/backpressure.py).
- Write: a client that reads nothing of its response for `write_timeout_s` (the socket's send buffer stays full)
  is disconnected; the handler's pending writes return and its slot is released.

Between requests on a keep-alive connection uvicorn's own `timeout_keep_alive` applies.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .error_shapes import body as error_body


def guarded_protocol(read_timeout_s: float, write_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the deadlines above (give it to uvicorn.Config(http=...))."""

    class DeadlineProtocol(_DeadlineProtocol):
        READ_TIMEOUT_S = read_timeout_s
        WRITE_TIMEOUT_S = write_timeout_s

    return DeadlineProtocol


class _DeadlineProtocol(HttpToolsProtocol):
    READ_TIMEOUT_S = 30.0
    WRITE_TIMEOUT_S = 30.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timer = None
        self._write_timer = None
        self._path = "/"
        self._begun = False  # a request's first bytes have arrived and it is not complete yet

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_read()

    def connection_lost(self, exc) -> None:
        self._disarm_read()
        self._disarm_write()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._path = "/"
        self._begun = True
        if self._read_timer is None:
            self._arm_read()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._path = self.scope.get("path") or "/"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._begun = False
        self._disarm_read()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.WRITE_TIMEOUT_S, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write()

    def _arm_read(self) -> None:
        self._disarm_read()
        self._read_timer = self.loop.call_later(self.READ_TIMEOUT_S, self._read_timed_out)

    def _disarm_read(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _disarm_write(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started
        if self._begun and not started:  # a connection that never sent anything is just closed
            message = (f"the request did not arrive whole within {self.READ_TIMEOUT_S:g} s (--request_read_timeout_s); "
                       f"the connection is closed")
            status, content = error_body("invalid_request", message, self._path, status=408)
            payload = json.dumps(content).encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload))
            if self.cycle is not None:  # the handler's reads see the disconnect, its writes go nowhere
                self.cycle.disconnected = True
                self.cycle.message_event.set()
        self.transport.close()

    def _write_timed_out(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose client read nothing for %g s (--response_write_timeout_s)",
                             self.WRITE_TIMEOUT_S)
        self.transport.abort()
