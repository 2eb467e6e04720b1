"""Every error a client can cause becomes a 4xx JSON body that says what is wrong; nothing leaks a trace."""

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..tasks.params import InvalidRequest

logger = logging.getLogger("hfserve")


class PredictorUnavailable(Exception):
    """The model behind this server (Triton) cannot be reached or is not ready: HTTP 503, gRPC UNAVAILABLE."""


def error_body(message: str) -> dict:
    return {"error": message}


async def invalid_request_handler(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content=error_body(str(error)))


async def validation_error_handler(_: Request, error: RequestValidationError) -> JSONResponse:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content=error_body("invalid request: " + "; ".join(problems)))


async def http_error_handler(_: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(status_code=error.status_code, content=error_body(str(error.detail)),
                        headers=getattr(error, "headers", None))


async def predictor_unavailable_handler(_: Request, error: PredictorUnavailable) -> JSONResponse:
    return JSONResponse(status_code=HTTPStatus.SERVICE_UNAVAILABLE, content=error_body(str(error)))


async def unexpected_error_handler(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error while serving %s %s", request.method, request.url.path)
    return JSONResponse(status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
                        content=error_body("internal error; the server logged the details"))


def install_error_handlers(app: FastAPI) -> None:
    """Registered after kserve's own handlers, so these win where both name the same exception."""
    app.add_exception_handler(InvalidRequest, invalid_request_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(PredictorUnavailable, predictor_unavailable_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
