"""Compatibility with standard V2 REST clients.

Triton's HTTP client sends a plain-JSON inference request without a JSON content type; kserve then reads the
body as the binary-tensor extension and refuses it for lacking Inference-Header-Content-Length. A V2 infer
request with neither header is JSON, so this middleware says so before kserve looks.
"""

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_INFER_PATH = re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")
_BINARY_HEADER = b"inference-header-content-length"


class V2JsonContentType:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _INFER_PATH.match(scope["path"]):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            names = {k for k, _ in scope["headers"]}
            content_type = dict(scope["headers"]).get(b"content-type", b"")
            if _BINARY_HEADER not in names and not content_type.startswith(b"application/json"):
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
