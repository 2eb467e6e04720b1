"""Errors in the shape Hugging Face's servers use: `{"error": message, "error_type": kind}`.

huggingface_hub turns `error_type` into its typed exceptions (ValidationError, OverloadedError, ...), and shows
the body of a 422 in the exception's message.
"""

from http import HTTPStatus

from fastapi.responses import JSONResponse


class HFError(Exception):
    def __init__(self, message: str, status: int = HTTPStatus.UNPROCESSABLE_ENTITY, error_type: str = "validation"):
        super().__init__(message)
        self.status = status
        self.error_type = error_type

    def body(self) -> dict:
        return {"error": str(self), "error_type": self.error_type}

    def response(self) -> JSONResponse:
        return JSONResponse(status_code=self.status, content=self.body())


def validation(message: str) -> HFError:
    return HFError(message)
