"""Backpressure: at most --max_concurrent_requests inference requests in flight, HTTP and gRPC together (one
`Slots`); beyond that, HTTP 429 with Retry-After (gRPC RESOURCE_EXHAUSTED, serving/grpc_limits.py) at once, so an
overloaded replica sheds load instead of queueing without bound (and a client or a load balancer can retry
elsewhere).

Only POST requests count (every inference route is a POST); health, readiness, metadata and /metrics never
wait behind inference and are never refused. A request counts from the moment its body has arrived completely
(security review M2: a slow upload holds no slot; serving/slow_clients.py bounds how long it may take) until its
response has been sent completely, streamed responses included.
"""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .error_shapes import body as error_body

RETRY_AFTER_S = 1


class Slots:
    """The in-flight count both front ends share. Only the event loop touches it: no lock."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("max_concurrent_requests must be at least 1")
        self.limit = limit
        self.in_flight = 0

    def take(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def refusal(self) -> str:
        return (f"the server is at its limit of {self.limit} concurrent requests (HTTP and gRPC together); "
                f"retry after {RETRY_AFTER_S} s")


class ConcurrencyLimit:
    def __init__(self, app: ASGIApp, max_concurrent: int | None = None, slots: Slots | None = None,
                 max_body_bytes: int = 1 << 20):
        self.app = app
        self.slots = slots or Slots(max_concurrent)
        self.max_concurrent = self.slots.limit
        self.max_body_bytes = max_body_bytes  # bodies are read before counting up to this; larger ones are refused inside

    @property
    def in_flight(self) -> int:
        return self.slots.in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self.app(scope, receive, send)  # refused at once, by its header, inside (serving/limits.py)
            return
        received: list[Message] = []
        size = 0
        while True:  # the body first: it costs a connection, not a slot, while it arrives
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left during its upload: nobody to answer
            received.append(message)
            size += len(message.get("body", b""))
            if not message.get("more_body", False) or size > self.max_body_bytes:
                break
        if not self.slots.take():
            await self._refuse(scope, send)
            return

        async def replay() -> Message:
            return received.pop(0) if received else await receive()

        try:
            await self.app(scope, replay, send)
        finally:
            self.slots.release()

    async def _refuse(self, scope: Scope, send: Send) -> None:
        status, content = error_body("overloaded", self.slots.refusal(), scope["path"])
        body = json.dumps(content).encode()
        start: Message = {"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body})
