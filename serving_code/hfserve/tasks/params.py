"""Per-request options a client may send in a request's `parameters`, validated once for every protocol."""

from dataclasses import dataclass
from typing import Any

MAX_TOP_K = 100


class InvalidRequest(ValueError):
    """The client sent something we cannot serve; the message says what (HTTP 400, gRPC INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class RequestParams:
    normalize: bool | None = None  # text_embedding: L2-normalise (default: as the checkpoint says)
    return_probabilities: bool | None = None  # sequence_classification (default: --return_probabilities)
    top_k: int = 5  # fill_mask candidates per mask

    @classmethod
    def parse(cls, raw: Any) -> "RequestParams":
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidRequest("'parameters' must be a JSON object")
        values = {}
        for name in ("normalize", "return_probabilities"):
            if raw.get(name) is not None:
                values[name] = _as_bool(name, raw[name])
        if raw.get("top_k") is not None:
            top_k = raw["top_k"]
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
                raise InvalidRequest(f"'top_k' must be an integer from 1 to {MAX_TOP_K}")
            values["top_k"] = top_k
        return cls(**values)


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidRequest(f"'{name}' must be true or false")
