"""TEI's error shape, {"error": message, "error_type": kind}, and its status codes:
413 too long (Validation), 422 other validation, 400 a route the served task does not offer,
429 overloaded (serving/backpressure.py), 503 unhealthy, 500 an unexpected failure (details only in the log)."""

import functools
import json
import logging
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from ...tasks.params import InputTooLong, InvalidRequest
from ..encoder_operations import WrongTask
from ..errors import PredictorUnavailable

logger = logging.getLogger("hfserve")


class Unhealthy(Exception):
    """No model is ready to answer."""


def tei_error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "error_type": error_type})


def validation_message(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()))
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


async def parse_body(request: Request, schema: type[BaseModel]) -> BaseModel:
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        raise InvalidRequest(validation_message(error)) from None


def error_response(error: Exception, path: str) -> JSONResponse:
    if isinstance(error, InputTooLong):
        return tei_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(error), "Validation")
    if isinstance(error, WrongTask):
        return tei_error(HTTPStatus.BAD_REQUEST, str(error), "Validation")
    if isinstance(error, InvalidRequest):
        return tei_error(HTTPStatus.UNPROCESSABLE_ENTITY, str(error), "Validation")
    if isinstance(error, (Unhealthy, PredictorUnavailable)):
        return tei_error(HTTPStatus.SERVICE_UNAVAILABLE, str(error), "Unhealthy")
    logger.exception("unexpected error while serving %s", path)
    return tei_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; the server logged the details", "Backend")


def tei_errors(endpoint):
    """Every failure of a TEI endpoint becomes a TEI error body; nothing leaks a trace."""

    @functools.wraps(endpoint)
    async def wrapped(self, request: Request):
        try:
            return await endpoint(self, request)
        except Exception as error:  # noqa: BLE001 - mapped to a status by error_response
            return error_response(error, request.url.path)

    return wrapped
