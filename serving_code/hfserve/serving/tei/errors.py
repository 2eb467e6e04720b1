"""Old names of TEI's error handling, kept while routes still import them. TEI's statuses and body
({"error", "error_type"}) are the "tei" family of serving/error_shapes.py; the server's one handler renders them,
so routes just raise."""

from fastapi.responses import JSONResponse

from ...errors import Unhealthy  # noqa: F401 - old import path
from .. import error_shapes
from ..body import parse_body  # noqa: F401 - old import path


def tei_error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message, "error_type": error_type})


def error_response(error: Exception, path: str) -> JSONResponse:
    found = error_shapes.problem(error, path)
    response = error_shapes.render(error, path)
    error_shapes.log(error, "POST", path, response.status_code, found.kind)
    return response


def tei_errors(endpoint):
    """No longer needed: the server's exception handler answers in TEI's shape on TEI paths."""
    return endpoint
