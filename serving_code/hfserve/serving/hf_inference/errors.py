"""Old name of a Hugging Face-shaped error, kept while the HF routes still raise it: an InvalidRequest (or the kind
its status names) that the server's one handler renders as {"error", "error_type"} (serving/error_shapes.py)."""

from http import HTTPStatus

from fastapi.responses import JSONResponse

from ...errors import InvalidRequest

_KINDS = {HTTPStatus.BAD_REQUEST: "invalid_json", HTTPStatus.UNPROCESSABLE_ENTITY: "invalid_request",
          HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "input_too_long", HTTPStatus.NOT_FOUND: "model_not_found",
          HTTPStatus.SERVICE_UNAVAILABLE: "unavailable"}


class HFError(InvalidRequest):
    def __init__(self, message: str, status: int = HTTPStatus.UNPROCESSABLE_ENTITY, error_type: str = "validation"):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.kind = _KINDS.get(status, "invalid_request")

    def body(self) -> dict:
        return {"error": str(self), "error_type": self.error_type}

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content=self.body())


def validation(message: str) -> HFError:
    return HFError(message)
