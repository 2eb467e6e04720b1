"""The one strict JSON body parser of every route: anything a client can send that is not plain, finite,
well-formed UTF-8 JSON becomes InvalidRequest (a 4xx in every protocol family), never a 500.

Refused: invalid JSON, bytes that are not UTF-8, NaN / Infinity (and numbers that overflow to them), integers
over Python's digit limit, strings (or keys) holding a lone UTF-16 surrogate (they cannot be tokenized or
written back as UTF-8), and nesting deeper than MAX_JSON_DEPTH.
"""

import json
import math
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import InvalidJSON, InvalidRequest

MAX_JSON_DEPTH = 64  # arrays/objects inside one another; real requests nest 2-5 deep


def _no_constants(name: str) -> Any:
    raise InvalidRequest(f"the request body holds {name}, which is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(f"the number {text[:40]} is out of range")
    return value


_decoder = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float)


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Strictly parse a whole JSON document; InvalidJSON (a kind of InvalidRequest) says what is wrong."""
    try:
        if not isinstance(raw, str):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest("the request body is not valid UTF-8") from None
        try:
            value = _decoder.decode(raw)
        except RecursionError:
            raise InvalidRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from None
        except InvalidRequest:
            raise
        except ValueError as error:  # JSONDecodeError, and int() past its digit limit
            raise InvalidRequest(f"the request body is not valid JSON: {_short(error)}") from None
        check_value(value)
    except InvalidJSON:
        raise
    except InvalidRequest as error:
        raise InvalidJSON(str(error)) from None
    return value


def check_value(value: Any, what: str = "the request body") -> None:
    """Depth and lone-surrogate checks of an already decoded JSON value (iterative: no recursion limit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, what)
        elif isinstance(item, (list, dict)):
            if depth > MAX_JSON_DEPTH:
                raise InvalidRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def check_text(text: str, what: str = "the request body") -> str:
    """A str holding a lone surrogate (from a \\ud800-style escape) is not text; refuse it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text") from None
    return text


def _short(error: ValueError) -> str:
    message = getattr(error, "msg", None) or str(error)
    return message if len(message) <= 200 else message[:200] + "..."


async def read_json(request) -> Any:
    """The request's body, strictly parsed (see loads)."""
    return loads(await request.body())


def validation_message(error: ValidationError, skip: tuple = ()) -> str:
    problems = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in skip)
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def validate(body: Any, schema: type[BaseModel]) -> BaseModel:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        raise InvalidRequest(validation_message(error)) from None


async def parse_body(request, schema: type[BaseModel]) -> BaseModel:
    """The request's body as `schema`: a JSON object required; pydantic's errors become a readable message."""
    return validate(await read_json(request), schema)
