"""Per-request options a client may send in a request's `parameters`, validated once for every protocol."""

from dataclasses import dataclass
from typing import Any

from ..errors import InputTooLong, InvalidRequest  # noqa: F401 - re-exported for existing imports

MAX_TOP_K = 100


@dataclass(frozen=True)
class RequestParams:
    normalize: bool | None = None  # text_embedding: L2-normalise (default: as the checkpoint says)
    return_probabilities: bool | None = None  # sequence_classification (default: --return_probabilities)
    top_k: int = 5  # fill_mask candidates per mask
    truncate: bool | None = None  # cut inputs to the model's limit (default: the server's --auto_truncate)
    truncation_direction: str = "right"  # which end truncation cuts: right or left
    raw_scores: bool = False  # rerank: the model's logit instead of the sigmoid of it
    prompt_name: str | None = None  # text_embedding: one of the checkpoint's prompts (tasks/prompts.py)
    prompt: str | None = None  # text_embedding: a prompt text of the client's own
    input_type: str | None = None  # text_embedding: Cohere/vLLM's use name, mapped to a prompt where one fits
    dimensions: int | None = None  # text_embedding: Matryoshka truncation to the first N dimensions
    embedding_types: tuple[str, ...] | None = None  # text_embedding over V2: typed tensors (Cohere's names)

    @classmethod
    def parse(cls, raw: Any) -> "RequestParams":
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InvalidRequest("'parameters' must be a JSON object")
        values = {}
        for name in ("normalize", "return_probabilities", "truncate", "raw_scores"):
            if raw.get(name) is not None:
                values[name] = _as_bool(name, raw[name])
        if raw.get("truncation_direction") is not None:
            values["truncation_direction"] = truncation_direction(raw["truncation_direction"])
        for name in ("prompt_name", "prompt", "input_type"):
            if raw.get(name) is not None:
                if not isinstance(raw[name], str):
                    raise InvalidRequest(f"'{name}' must be a string")
                values[name] = raw[name]
        if raw.get("dimensions") is not None:
            values["dimensions"] = dimensions(raw["dimensions"])
        if raw.get("embedding_types") is not None:
            values["embedding_types"] = embedding_types(raw["embedding_types"])
        if raw.get("top_k") is not None:
            top_k = raw["top_k"]
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
                raise InvalidRequest(f"'top_k' must be an integer from 1 to {MAX_TOP_K}")
            values["top_k"] = top_k
        return cls(**values)


def dimensions(value: Any) -> int:
    """A Matryoshka width: a positive integer (checked against the model's width when the vectors are made)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("'dimensions' must be a positive integer")
    return value


# V2's `embedding_types`: Cohere's embedding_types as typed tensors (tasks/embedding.py quantize); base64 is not
# one, V2 carries raw bytes already (binary_data, gRPC raw contents).
V2_EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary")


def embedding_types(value: Any) -> tuple[str, ...]:
    """A list of type names, or one string of comma-separated names (gRPC parameters hold no lists)."""
    names = [p.strip() for p in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n in V2_EMBEDDING_TYPES
                                                             for n in names):
        raise InvalidRequest(f"'embedding_types' must be a non-empty list (or comma-separated string) of "
                             f"{', '.join(V2_EMBEDDING_TYPES)}; got {value!r}"[:300])
    return tuple(dict.fromkeys(names))


def truncation_direction(value: Any) -> str:
    """'right' or 'left' (any case: TEI clients send "Right" / "Left")."""
    if isinstance(value, str) and value.lower() in ("right", "left"):
        return value.lower()
    raise InvalidRequest("'truncation_direction' must be 'right' or 'left'")


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidRequest(f"'{name}' must be true or false")
