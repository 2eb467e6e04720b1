"""Backpressure: at most --max_concurrent_requests inference requests in flight; beyond that, HTTP 429 with
Retry-After at once, so an overloaded replica sheds load instead of queueing without bound (and a client or a
load balancer can retry elsewhere).

Only POST requests count (every inference route is a POST); health, readiness, metadata and /metrics never
wait behind inference and are never refused. A request counts until its response has been sent completely,
streamed responses included.
"""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .error_shapes import body as error_body

RETRY_AFTER_S = 1


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, max_concurrent: int):
        if max_concurrent < 1:
            raise ValueError("max_concurrent_requests must be at least 1")
        self.app = app
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrent:
            await self._refuse(scope, send)
            return
        self.in_flight += 1  # one event loop: no lock needed between the check and the increment
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        message = f"the server is at its limit of {self.max_concurrent} concurrent requests; retry after {RETRY_AFTER_S} s"
        status, content = error_body("overloaded", message, scope["path"])
        body = json.dumps(content).encode()
        start: Message = {"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body})
