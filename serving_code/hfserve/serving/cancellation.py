"""Telling a model that its client went away, whatever the protocol.

The front end puts a `RequestScope` in a context variable before the route or the gRPC method runs: its
`cancelled` event is set when the HTTP client disconnects or the gRPC call is cancelled, and a gRPC deadline is
kept too. Models read it with `current()` (the generative model stops generating, serving/../huggingface/
generative_model.py); a request that comes from elsewhere (a test, a script) gets a fresh scope nobody cancels.

Starlette does not cancel a handler whose client left, and a non-streaming handler never looks at `receive`
after the body, so `CancelOnDisconnect` listens on the handler's behalf: once the body has been read, one small
task waits for `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class RequestScope:
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # time.monotonic() by which the client stops waiting (gRPC's deadline)

    def remaining_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


_CURRENT: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar("hfserve_request_scope",
                                                                                default=None)


def current() -> RequestScope:
    return _CURRENT.get() or RequestScope()


def enter(scope: RequestScope) -> contextvars.Token:
    return _CURRENT.set(scope)


def leave(token: contextvars.Token) -> None:
    _CURRENT.reset(token)


class CancelOnDisconnect:
    """ASGI middleware: POST handlers run with a RequestScope that is cancelled when the client disconnects."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = RequestScope()
        watcher: asyncio.Future | None = None

        async def watch() -> Message:
            message = await receive()  # after the whole body, only http.disconnect comes
            if message["type"] == "http.disconnect":
                request.cancelled.set()
            return message

        async def watched_receive() -> Message:
            nonlocal watcher
            if watcher is not None:  # the app listens for the disconnect too (a streaming response)
                return await asyncio.shield(watcher)
            message = await receive()
            if message["type"] == "http.disconnect":
                request.cancelled.set()
            elif not message.get("more_body", False):
                watcher = asyncio.ensure_future(watch())
            return message

        token = enter(request)
        try:
            await self.app(scope, watched_receive, send)
        finally:
            leave(token)
            if watcher is not None and not watcher.done():
                watcher.cancel()
