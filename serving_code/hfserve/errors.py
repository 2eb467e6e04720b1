"""Every error the server means to answer, each with one `kind`; serving/error_shapes.py maps a kind to a status
(per protocol family) and to that family's body. Pure Python, so tasks/ and the engines can raise these."""


class ServingError(Exception):
    """Base of every domain error. An exception that is not one of these is an internal error (500, logged)."""

    kind = "internal"


class InvalidRequest(ServingError, ValueError):
    """The client sent something we cannot serve; the message says what (HTTP 400, gRPC INVALID_ARGUMENT)."""

    kind = "invalid_request"


class InvalidJSON(InvalidRequest):
    """The request body is not plain, finite UTF-8 JSON (serving/body.py says what is wrong with it)."""

    kind = "invalid_json"


class InputTooLong(InvalidRequest):
    """An input has more tokens than the model accepts and truncation is off; the message names the limit
    (HTTP 400 on V1, V2 and OpenAI routes, 413 on TEI routes as TEI answers it)."""

    kind = "input_too_long"


class WrongTask(InvalidRequest):
    """The served task does not offer this operation or route."""

    kind = "wrong_task"


class ModelNotFound(ServingError):
    """The request names a model this server does not serve."""

    kind = "model_not_found"


class BodyTooLarge(ServingError):
    """The request body is over --max_request_bytes."""

    kind = "body_too_large"


class Overloaded(ServingError):
    """Too many requests are waiting; the client should retry later."""

    kind = "overloaded"


class Unavailable(ServingError):
    """The model behind this server (Triton) cannot be reached, or no model is ready: HTTP 503, gRPC UNAVAILABLE."""

    kind = "unavailable"


PredictorUnavailable = Unavailable  # old names, kept for existing imports
Unhealthy = Unavailable
