"""Which status and body an error gets, per protocol family: one table and one renderer each.

A family is chosen by the request's path (`family`). Every error is first reduced to a `kind` (`kind_of`):
hfserve's own errors carry one (hfserve/errors.py); kserve's, FastAPI's and Starlette's are mapped here.

    family        routes                                   body
    kserve        /v1/..., /v2/..., anything unlisted      {"error": message} (and "error_type" on a 429)
    tei           /embed, /predict, /rerank, ...           {"error": message, "error_type": kind}   (TEI)
    hf            POST /, /generate, /generate_stream      {"error": message, "error_type": kind}   (HF Inference)
    openai        /openai/v1/..., /v1/embeddings, /embeddings   {"error": {"message", "type", "code"}}
    rerank        /v1/rerank, /openai/v1/rerank, /v2/embed as openai (Cohere / Jina clients read that shape)

gRPC maps the same kinds to status codes (`GRPC_CODES`).
"""

import logging
from http import HTTPStatus
from typing import NamedTuple

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from grpc import StatusCode
from kserve import errors as kserve_errors
from starlette.exceptions import HTTPException

from ..errors import BodyTooLarge, ServingError

logger = logging.getLogger("hfserve")

INTERNAL_MESSAGE = "internal error; the server logged the details"
VERSIONS_MESSAGE = "model versions are not supported: send the request to the model without /versions/<version>"


class Row(NamedTuple):
    status: int
    label: str | None  # TEI/HF error_type, OpenAI error type; on kserve routes an error_type only where set


_COMMON = {
    "model_not_found": Row(HTTPStatus.NOT_FOUND, "not_found"),
    "body_too_large": Row(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "validation"),
    "overloaded": Row(HTTPStatus.TOO_MANY_REQUESTS, "overloaded"),
    "unavailable": Row(HTTPStatus.SERVICE_UNAVAILABLE, "unhealthy"),
    "not_implemented": Row(HTTPStatus.NOT_IMPLEMENTED, "not_implemented"),
    "internal": Row(HTTPStatus.INTERNAL_SERVER_ERROR, "backend"),
}

TABLES: dict[str, dict[str, Row]] = {
    "kserve": {  # kserve's {"error"}; a 429 also says "overloaded", as huggingface_hub's clients read it
        **{kind: Row(row.status, None) for kind, row in _COMMON.items()},
        "overloaded": _COMMON["overloaded"],
        "invalid_request": Row(HTTPStatus.BAD_REQUEST, None),
        "invalid_json": Row(HTTPStatus.BAD_REQUEST, None),
        "input_too_long": Row(HTTPStatus.BAD_REQUEST, None),
        "wrong_task": Row(HTTPStatus.BAD_REQUEST, None),
    },
    "tei": {  # text-embeddings-inference's own statuses
        **_COMMON,
        "invalid_request": Row(HTTPStatus.UNPROCESSABLE_ENTITY, "validation"),
        "invalid_json": Row(HTTPStatus.UNPROCESSABLE_ENTITY, "validation"),
        "input_too_long": Row(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "validation"),
        "wrong_task": Row(HTTPStatus.BAD_REQUEST, "validation"),
    },
    "hf": {  # the Inference API's and TGI's
        **_COMMON,
        "invalid_request": Row(HTTPStatus.UNPROCESSABLE_ENTITY, "validation"),
        "invalid_json": Row(HTTPStatus.BAD_REQUEST, "validation"),
        "input_too_long": Row(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "validation"),
        "wrong_task": Row(HTTPStatus.NOT_FOUND, "not_found"),
    },
    "openai": {
        "invalid_request": Row(HTTPStatus.BAD_REQUEST, "invalid_request_error"),
        "invalid_json": Row(HTTPStatus.BAD_REQUEST, "invalid_request_error"),
        "input_too_long": Row(HTTPStatus.BAD_REQUEST, "invalid_request_error"),
        "wrong_task": Row(HTTPStatus.BAD_REQUEST, "invalid_request_error"),
        "model_not_found": Row(HTTPStatus.NOT_FOUND, "not_found_error"),
        "body_too_large": Row(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "invalid_request_error"),
        "overloaded": Row(HTTPStatus.TOO_MANY_REQUESTS, "overloaded"),
        "unavailable": Row(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable"),
        "not_implemented": Row(HTTPStatus.NOT_IMPLEMENTED, "not_implemented"),
        "internal": Row(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error"),
    },
}
TABLES["rerank"] = TABLES["openai"]

KINDS = tuple(TABLES["kserve"])

GRPC_CODES = {
    "invalid_request": StatusCode.INVALID_ARGUMENT,
    "invalid_json": StatusCode.INVALID_ARGUMENT,
    "input_too_long": StatusCode.INVALID_ARGUMENT,
    "wrong_task": StatusCode.INVALID_ARGUMENT,
    "model_not_found": StatusCode.NOT_FOUND,
    "body_too_large": StatusCode.RESOURCE_EXHAUSTED,
    "overloaded": StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": StatusCode.UNAVAILABLE,
    "not_implemented": StatusCode.UNIMPLEMENTED,
    "internal": StatusCode.INTERNAL,
}

TEI_PATHS = frozenset({"/embed", "/embed_all", "/embed_sparse", "/predict", "/rerank", "/similarity", "/tokenize",
                       "/decode", "/info", "/health"})
HF_PATHS = frozenset({"/", "/generate", "/generate_stream"})
RERANK_PATHS = frozenset({"/v1/rerank", "/openai/v1/rerank", "/v2/embed"})  # the Cohere-style routes
OPENAI_ALIAS_PATHS = frozenset({"/v1/embeddings", "/embeddings"})  # serving/openai/routes.py EMBEDDING_ALIASES


def family(path: str) -> str:
    path = path.rstrip("/") or "/"
    if path in RERANK_PATHS:
        return "rerank"
    if path.startswith("/openai/") or path in OPENAI_ALIAS_PATHS:
        return "openai"
    if path in TEI_PATHS:
        return "tei"
    if path in HF_PATHS:
        return "hf"
    return "kserve"


_KSERVE_KINDS = (
    (kserve_errors.InvalidInput, "invalid_request"),
    (kserve_errors.ModelNotFound, "model_not_found"),
    (kserve_errors.ModelNotReady, "unavailable"),
    (kserve_errors.ServerNotReady, "unavailable"),
    (kserve_errors.ServerNotLive, "unavailable"),
    (kserve_errors.NoModelReady, "unavailable"),
    (kserve_errors.UnsupportedProtocol, "not_implemented"),
)
_STATUS_KINDS = {HTTPStatus.NOT_FOUND: "model_not_found", HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "body_too_large",
                 HTTPStatus.TOO_MANY_REQUESTS: "overloaded", HTTPStatus.SERVICE_UNAVAILABLE: "unavailable",
                 HTTPStatus.NOT_IMPLEMENTED: "not_implemented"}


class Problem(NamedTuple):
    kind: str
    message: str
    status: int | None = None  # set where the error names its own status (Starlette's HTTPException)
    headers: dict | None = None


def problem(error: BaseException, path: str = "") -> Problem:
    """The kind and client-facing message of any exception (an unexpected one: "internal", no details)."""
    if isinstance(error, ServingError):
        return Problem(error.kind, str(error))
    if isinstance(error, RequestValidationError):
        return Problem("invalid_request", validation_message(error.errors()))
    if isinstance(error, HTTPException):
        if isinstance(error.__cause__, BodyTooLarge):  # FastAPI wraps what reading the body raised
            return Problem("body_too_large", str(error.__cause__))
        status = error.status_code
        kind = _STATUS_KINDS.get(status, "invalid_request" if status < 500 else "internal")
        return Problem(kind, str(error.detail), status, getattr(error, "headers", None))
    for kserve_class, kind in _KSERVE_KINDS:
        if isinstance(error, kserve_class):
            return Problem(kind, str(error))
    if isinstance(error, NotImplementedError):
        # kserve's "Model versioning not supported yet" (a version in the path or a model_version parameter) is
        # a request this server cannot serve: a client error.
        if "/versions/" in path or "version" in str(error).lower():
            return Problem("invalid_request", VERSIONS_MESSAGE)
        return Problem("not_implemented", str(error) or "not implemented")
    return Problem("internal", INTERNAL_MESSAGE)


def validation_message(errors: list) -> str:
    problems = []
    for item in errors[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def status_of(kind: str, path: str) -> int:
    return int(TABLES[family(path)][kind].status)


def body(kind: str, message: str, path: str, status: int | None = None) -> tuple[int, dict]:
    """(status, JSON body) for an error of `kind` on `path`, in that path's family's shape."""
    name = family(path)
    row = TABLES[name].get(kind) or TABLES[name]["internal"]
    status = int(status or row.status)
    if name in ("openai", "rerank"):
        return status, {"error": {"message": message, "type": row.label, "code": status}}
    if name in ("tei", "hf") or row.label:
        return status, {"error": message, "error_type": row.label}
    return status, {"error": message}


def render(error: BaseException, path: str) -> JSONResponse:
    return _response(problem(error, path), path)


def _response(found: Problem, path: str) -> JSONResponse:
    status, content = body(found.kind, found.message, path, found.status)
    return JSONResponse(status_code=status, content=content, headers=found.headers)


def log(error: BaseException, method: str, path: str, status: int, kind: str) -> None:
    """One line per refused request, client-supplied text escaped (%r); a traceback only for internal errors."""
    if kind == "internal":
        logger.error("unexpected error while serving %s %r", method, path, exc_info=error)
    else:
        logger.info("refused %s %r: %d %s: %r", method, path, status, kind, str(error)[:300])


async def handle(request, error: Exception) -> JSONResponse:
    """The one exception handler of the HTTP app (serving/server.py installs it for every exception class)."""
    path = request.url.path
    found = problem(error, path)
    response = _response(found, path)
    log(error, request.method, path, response.status_code, found.kind)
    return response


# What the handler is installed for: the classes kserve registers its own (traceback-logging) handlers for, so
# that ours are the ones found first, and the bases of everything else.
HANDLED = (ServingError, RequestValidationError, HTTPException, kserve_errors.InvalidInput,
           kserve_errors.InferenceError, kserve_errors.ModelNotFound, kserve_errors.ModelNotReady,
           kserve_errors.UnsupportedProtocol, kserve_errors.ServerNotLive, kserve_errors.ServerNotReady,
           NotImplementedError, Exception)


def grpc_status(error: BaseException) -> tuple[StatusCode, str]:
    """The gRPC status and message of an exception, by the same kinds as HTTP."""
    if isinstance(error, NotImplementedError):
        return StatusCode.UNIMPLEMENTED, str(error) or "not implemented"
    found = problem(error)
    return GRPC_CODES.get(found.kind, StatusCode.INTERNAL), found.message
