"""Turning V1 and V2 request bodies into (texts, parameters), with a clear 4xx message for anything off."""

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kserve import InferRequest

from ..tasks.params import InvalidRequest, RequestParams
from .body import MAX_JSON_DEPTH, check_text, loads

TEXT_INPUT = "text"
PAIR_INPUT = "text_pair"  # second text of each pair (cross-encoders, pair classifiers)


@dataclass
class ParsedRequest:
    texts: list  # str, or (text, text_pair) tuples
    params: RequestParams = field(default_factory=RequestParams)
    v2_request: InferRequest | None = None  # set for V2 (REST or gRPC) requests
    params_raw: dict | None = None  # the request's parameters as sent (generation options)

    @property
    def is_v2(self) -> bool:
        return self.v2_request is not None

    @property
    def binary_outputs(self) -> bool:
        """gRPC clients (Triton's among them) read tensors from raw_output_contents."""
        return bool(self.v2_request is not None and getattr(self.v2_request, "from_grpc", False))

    @property
    def response_id(self) -> str:
        """The V2 response id: the request's own id, or a fresh one (V2 responses must carry an id)."""
        return (self.v2_request.id if self.v2_request is not None else None) or str(uuid.uuid4())


def parse_request(payload: Any, max_items: int) -> ParsedRequest:
    if isinstance(payload, (bytes, str)):
        # kserve hands over bodies sent without a JSON content type (e.g. `curl -d`) undecoded.
        payload = loads(payload)
    if isinstance(payload, InferRequest):
        return parse_v2(payload, max_items)
    if isinstance(payload, dict):
        return parse_v1(payload, max_items)
    raise InvalidRequest("the request body must be a JSON object")


def parse_v1(body: dict, max_items: int) -> ParsedRequest:
    if "instances" not in body:
        raise InvalidRequest("V1 requests need an 'instances' list, e.g. {\"instances\": [\"some text\"]}")
    instances = body["instances"]
    if not isinstance(instances, list):
        raise InvalidRequest("'instances' must be a list")
    texts = [_v1_text(i, item) for i, item in enumerate(instances)]
    check_texts(texts, max_items)
    raw = body.get("parameters")
    return ParsedRequest(texts=texts, params=RequestParams.parse(raw), params_raw=raw)


def _v1_text(index: int, item: Any) -> str | tuple[str, str]:
    pair = None
    if isinstance(item, dict):
        pair = item.get(PAIR_INPUT)
        item = item.get("text")
    if not isinstance(item, str):
        raise InvalidRequest(f"instance {index} must be a string or an object with a string 'text'")
    if pair is None:
        return item
    if not isinstance(pair, str):
        raise InvalidRequest(f"instance {index}: '{PAIR_INPUT}' must be a string")
    return item, pair


def parse_v2(request: InferRequest, max_items: int) -> ParsedRequest:
    inputs = request.inputs or []
    by_name = {tensor.name: tensor for tensor in inputs}
    if TEXT_INPUT not in by_name or len(by_name) != len(inputs) or not set(by_name) <= {TEXT_INPUT, PAIR_INPUT}:
        names = [tensor.name for tensor in inputs]
        raise InvalidRequest(f"expected one BYTES input named '{TEXT_INPUT}' (and, for text pairs, one named "
                             f"'{PAIR_INPUT}' of the same shape), got {names}")
    texts = _v2_texts(by_name[TEXT_INPUT])
    if PAIR_INPUT in by_name:
        pairs = _v2_texts(by_name[PAIR_INPUT])
        if len(pairs) != len(texts):
            raise InvalidRequest(f"'{PAIR_INPUT}' has {len(pairs)} elements but '{TEXT_INPUT}' has {len(texts)}")
        texts = list(zip(texts, pairs))
    check_texts(texts, max_items)
    raw = _plain_parameters(request.parameters)
    return ParsedRequest(texts=texts, params=RequestParams.parse(raw), v2_request=request, params_raw=raw)


def _v2_texts(tensor) -> list[str]:
    name = tensor.name
    if tensor.datatype != "BYTES":
        raise InvalidRequest(f"input '{name}' must have datatype BYTES, got {tensor.datatype}")
    shape = list(tensor.shape or [])
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidRequest(f"input '{name}' must have shape [N] or [N, 1], got {shape}")
    texts = [_v2_text(i, item, name) for i, item in enumerate(_v2_items(tensor))]
    if len(texts) != shape[0]:
        raise InvalidRequest(f"input '{name}' has shape {shape} but {len(texts)} elements")
    return texts


def _v2_items(tensor) -> list:
    data = tensor.data
    if data is None or (isinstance(data, list) and not data and getattr(tensor, "_raw_data", None)):
        try:  # binary tensors (REST extension, gRPC raw_input_contents): kserve unpacks them here
            return list(tensor.as_numpy().reshape(-1))
        except Exception as error:  # noqa: BLE001 - truncated or mis-shaped bytes: struct.error, ValueError, ...
            raise InvalidRequest(f"input '{tensor.name}' binary data does not match its datatype and shape "
                                 f"{list(tensor.shape or [])}: {error}") from None
    if isinstance(data, np.ndarray):
        return list(data.reshape(-1))
    if not isinstance(data, list):
        raise InvalidRequest(f"input '{tensor.name}' data must be a list of strings")
    return _flatten(data, tensor.name)


def _flatten(items: list, name: str) -> list:
    """Nested lists in order, without recursion (a client decides how deep they go)."""
    flat = []
    stack = [(iter(items), 1)]
    while stack:
        level, depth = stack[-1]
        item = next(level, stack)
        if item is stack:
            stack.pop()
        elif isinstance(item, list):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidRequest(f"input '{name}' data nests deeper than {MAX_JSON_DEPTH} levels")
            stack.append((iter(item), depth + 1))
        else:
            flat.append(item)
    return flat


def _v2_text(index: int, item: Any, name: str = TEXT_INPUT) -> str:
    if isinstance(item, (bytes, np.bytes_)):
        try:
            return bytes(item).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"element {index} of '{name}' is not valid UTF-8") from None
    if not isinstance(item, str):
        raise InvalidRequest(f"element {index} of '{name}' must be a string")
    return item


def _plain_parameters(parameters: Any) -> dict | None:
    """V2 parameters arrive as plain values (REST) or InferParameter messages (gRPC)."""
    if not parameters:
        return None
    plain = {}
    for key, value in dict(parameters).items():
        for kind in ("bool_param", "int64_param", "string_param", "double_param"):
            if hasattr(value, "HasField") and value.HasField(kind):
                value = getattr(value, kind)
                break
        plain[key] = value
    return plain


def check_texts(texts: list, max_items: int) -> None:
    if not texts:
        raise InvalidRequest("the request has no texts; send at least one")
    if len(texts) > max_items:
        raise InvalidRequest(f"the request has {len(texts)} texts; at most {max_items} are allowed per request")
    for index, text in enumerate(texts):
        for part in text if isinstance(text, tuple) else (text,):
            if isinstance(part, str):
                check_text(part, f"text {index}")
