"""An optional API key for clusters without an authenticating gateway (security review M5), as TEI's --api-key.

Set with `--api_key_file` (preferred: a mounted Secret), else `--api_key` or `$HFSERVE_API_KEY` (a flag's value is
visible in /proc/<pid>/cmdline). Every HTTP request and gRPC call must then carry `Authorization: Bearer <key>`, the
header the OpenAI, Cohere and huggingface_hub clients send for their api_key/token. The key is compared in constant
time (hmac.compare_digest) and never logged, echoed or put in an error.

Exempt: the probes (`/v2/health/live`, `/v2/health/ready`, TEI's `/health`, kserve's `GET /`, and the model
readiness GETs `/v2/models/<name>/ready` and V1's `/v1/models/<name>`; gRPC ServerLive, ServerReady, ModelReady), so
kubelet and KServe need no key; and `/metrics` unless `--api_key_covers_metrics`, so a Prometheus scraper
needs none (the metrics carry counts and latencies, no request content). Everything else, metadata and the OpenAPI
schema included, answers 401 with a JSON error in the route's own shape (gRPC: UNAUTHENTICATED).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from pathlib import Path

import grpc
from grpc import aio

ENV_VAR = "HFSERVE_API_KEY"
PROBE_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/health"})
METRICS_PATH = "/metrics"
GRPC_PROBE_METHODS = frozenset({"/inference.GRPCInferenceService/ServerLive",
                                "/inference.GRPCInferenceService/ServerReady",
                                "/inference.GRPCInferenceService/ModelReady"})
# model readiness, GET only: /v2/models/<name>/ready and V1's /v1/models/<name> (no ':predict' suffix)
MODEL_READY_PATH = re.compile(r"^/v2/models/[^/]+/ready$|^/v1/models/[^/:]+$")
MESSAGE = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"

logger = logging.getLogger("hfserve")


class ApiKeyError(ValueError):
    """The key's source is unusable; the message names the flag or file, never the key."""


def resolve(api_key_file: Path | str | None, api_key: str | None, environ=os.environ) -> bytes | None:
    """The configured key (file, else flag, else $HFSERVE_API_KEY), or None when none is set."""
    if api_key_file is not None:
        path = Path(api_key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ApiKeyError(f"--api_key_file {path}: cannot read it ({type(error).__name__})") from None
        key = text.strip()
        if not key:
            raise ApiKeyError(f"--api_key_file {path} is empty")
    elif api_key is not None:
        key = api_key.strip()
        if not key:
            raise ApiKeyError("--api_key is empty")
    else:
        key = environ.get(ENV_VAR, "").strip()
        if not key:
            return None
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ApiKeyError("the API key must be one printable token without spaces (it travels in a header)")
    return key.encode()


def _presented(authorization: bytes | str | None) -> bytes | None:
    if authorization is None:
        return None
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip()


def accepts(key: bytes, authorization: bytes | str | None) -> bool:
    token = _presented(authorization)
    # compare_digest takes time independent of where the two differ (its length still shows)
    return token is not None and hmac.compare_digest(token, key)


def _error_body(path: str) -> bytes:
    from .error_shapes import family

    name = family(path)
    if name in ("openai", "rerank"):
        content = {"error": {"message": MESSAGE, "type": "invalid_request_error", "code": "invalid_api_key"}}
    elif name in ("tei", "hf"):
        content = {"error": MESSAGE, "error_type": "unauthorized"}
    else:
        content = {"error": MESSAGE}
    return json.dumps(content).encode()


class ApiKeyCheck:
    """ASGI middleware: refuses an HTTP request without the key before anything else reads it."""

    def __init__(self, app, key: bytes, covers_metrics: bool = False):
        self.app = app
        self.key = key
        self.exempt = PROBE_PATHS if covers_metrics else PROBE_PATHS | {METRICS_PATH}

    def _exempt(self, scope) -> bool:
        path = scope["path"].rstrip("/") or "/"
        if path in self.exempt:
            return True
        # kserve's liveness answer at GET /, and model readiness; POST / is an inference route
        return scope["method"] in ("GET", "HEAD") and (path == "/" or MODEL_READY_PATH.match(path) is not None)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        authorization = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if accepts(self.key, authorization):
            await self.app(scope, receive, send)
            return
        body = _error_body(scope["path"])
        logger.info("refused %s %r: missing or wrong API key", scope["method"], scope["path"][:200])
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="hfserve"')]})
        await send({"type": "http.response.body", "body": body})


def http_middlewares(serving) -> tuple:
    """(middleware, options) for HFModelServer's list, empty when no key is set (serving: a ServingConfig)."""
    key = resolve(serving.api_key_file, serving.api_key)
    if key is None:
        return ()
    return ((ApiKeyCheck, {"key": key, "covers_metrics": serving.api_key_covers_metrics}),)


def grpc_interceptors(serving) -> tuple:
    key = resolve(serving.api_key_file, serving.api_key)
    return () if key is None else (ApiKeyInterceptor(key),)


def _deny_handler(handler):
    """A handler of the same shape as the method's that answers UNAUTHENTICATED without running it."""

    async def deny(request_or_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, MESSAGE)

    kinds = (("unary_unary", grpc.unary_unary_rpc_method_handler),
             ("unary_stream", grpc.unary_stream_rpc_method_handler),
             ("stream_unary", grpc.stream_unary_rpc_method_handler),
             ("stream_stream", grpc.stream_stream_rpc_method_handler))
    for attribute, make in kinds:
        if getattr(handler, attribute, None) is not None:
            return make(deny, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
    return handler


class ApiKeyInterceptor(aio.ServerInterceptor):
    """gRPC: the key in the `authorization` metadata, as `Bearer <key>`."""

    def __init__(self, key: bytes):
        self.key = key

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in GRPC_PROBE_METHODS:
            return handler
        metadata = handler_call_details.invocation_metadata or ()
        authorization = next((value for name, value in metadata if name == "authorization"), None)
        if accepts(self.key, authorization):
            return handler
        logger.info("refused gRPC %r: missing or wrong API key", handler_call_details.method[:200])
        return _deny_handler(handler)
