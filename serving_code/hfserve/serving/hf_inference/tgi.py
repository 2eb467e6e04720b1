"""text-generation-inference's request parameters and response shapes (`/generate`, `/generate_stream`, and
text generation on `POST /`), restated from its published API: parameters are checked the way TGI checks them,
outputs carry TGI's fields, streams are server-sent events with one token per event."""

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ...errors import ServingError
from ...tasks.generation import (
    GeneratedToken,
    Generation,
    GenerationParams,
    check_max_new_tokens,
    check_seed,
    stop_sequences,
)
from ...tasks.params import InvalidRequest

logger = logging.getLogger("hfserve")

DEFAULT_MAX_NEW_TOKENS = 20

# Options TGI accepts that change nothing when left at these values; any other value is refused, not ignored.
_ONLY_AT_DEFAULT = {"best_of": (None, 1), "watermark": (None, False), "decoder_input_details": (None, False),
                    "top_n_tokens": (None, 0), "grammar": (None,), "adapter_id": (None, ""),
                    "frequency_penalty": (None, 0, 0.0)}
_SERVED = {"max_new_tokens", "temperature", "top_p", "top_k", "typical_p", "repetition_penalty", "do_sample", "stop",
           "seed", "truncate", "return_full_text", "details"}


@dataclass(frozen=True)
class TGIRequest:
    prompt: str
    params: GenerationParams
    details: bool = False
    return_full_text: bool = False

    def full_text(self, generated: str) -> str:
        return self.prompt + generated if self.return_full_text else generated


def parse_request(body: Any) -> TGIRequest:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object with 'inputs' and optional 'parameters'")
    prompt = body.get("inputs")
    if not isinstance(prompt, str):
        raise InvalidRequest("'inputs' must be the prompt, a string")
    raw = body.get("parameters") or {}
    if not isinstance(raw, dict):
        raise InvalidRequest("'parameters' must be a JSON object")
    return TGIRequest(prompt, generation_params(raw), details=_flag(raw, "details"),
                      return_full_text=_flag(raw, "return_full_text"))


def generation_params(raw: dict) -> GenerationParams:
    """TGI's parameters as GenerationParams. As in TGI, any sampling option (a temperature other than 1, top_k,
    top_p or typical_p below 1) turns sampling on even without do_sample; otherwise decoding is greedy."""
    unknown = sorted(set(raw) - _SERVED - set(_ONLY_AT_DEFAULT))
    if unknown:
        raise InvalidRequest(f"unknown parameters {unknown}; this server takes {sorted(_SERVED)}")
    refused = sorted(k for k, allowed in _ONLY_AT_DEFAULT.items() if k in raw and raw[k] not in allowed)
    if refused:
        raise InvalidRequest(f"this server does not support {refused}; leave them unset")
    temperature = _number(raw, "temperature", above=0)
    top_p = _number(raw, "top_p", above=0, at_most=1)
    typical_p = _number(raw, "typical_p", above=0, at_most=1)
    repetition_penalty = _number(raw, "repetition_penalty", above=0)
    top_k = _integer(raw, "top_k", minimum=1)
    truncate = _integer(raw, "truncate", minimum=1)
    sampling = (_flag(raw, "do_sample") or (temperature is not None and temperature != 1.0) or top_k is not None
                or (top_p is not None and top_p < 1) or (typical_p is not None and typical_p < 1))
    max_new = raw.get("max_new_tokens")
    return GenerationParams(
        max_new_tokens=check_max_new_tokens(DEFAULT_MAX_NEW_TOKENS if max_new is None else max_new),
        temperature=(temperature or 1.0) if sampling else 0.0,
        # TGI filters by top-k only when asked (0 turns off the checkpoint's default).
        top_p=top_p if top_p is not None else 1.0, top_k=0 if top_k is None else top_k, typical_p=typical_p,
        repetition_penalty=repetition_penalty, truncate=truncate, stop=stop_sequences(raw.get("stop")),
        seed=check_seed(raw.get("seed")))


def _flag(raw: dict, name: str) -> bool:
    value = raw.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false")
    return value


def _number(raw: dict, name: str, above: float, at_most: float | None = None) -> float | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= above or (
            at_most is not None and value > at_most):
        bound = f"in ({above}, {at_most}]" if at_most is not None else f"greater than {above}"
        raise InvalidRequest(f"'{name}' must be a number {bound}")
    return float(value)


def _integer(raw: dict, name: str, minimum: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidRequest(f"'{name}' must be an integer of at least {minimum}")
    return value


# --- responses ---------------------------------------------------------------------------------


def token_json(token: GeneratedToken) -> dict:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


def tgi_text(generation: Generation) -> str:
    """TGI's generated text: every generated token decoded, a stop sequence that ended it included."""
    return "".join(t.text for t in generation.tokens)


def generate_response(request: TGIRequest, generation: Generation) -> dict:
    response: dict = {"generated_text": request.full_text(tgi_text(generation))}
    if request.details:
        response["details"] = {
            "finish_reason": generation.tgi_finish_reason,
            "generated_tokens": generation.completion_tokens,
            "seed": generation.seed,
            "prefill": [],
            "tokens": [token_json(t) for t in generation.tokens],
            "top_tokens": None,
            "best_of_sequences": None,
        }
    return response


async def stream_events(request: TGIRequest, items: AsyncIterator[GeneratedToken | Generation]) -> AsyncIterator[bytes]:
    """One server-sent event per token; the last also carries the generated text (and details when asked).
    A failure after the stream started is sent as an event with `error`, as TGI does."""
    held: GeneratedToken | None = None
    index = 0
    try:
        async for item in items:
            if isinstance(item, Generation):
                if held is not None:
                    yield _event(_stream_token(index, held, request, item))
                return
            if held is not None:
                yield _event(_stream_token(index, held))
            index += 1
            held = item
    except Exception as error:  # noqa: BLE001 - reported to the client inside the stream
        if isinstance(error, ServingError):  # a bad request, the deadline, overload: the client is told which
            message = str(error)
        else:
            logger.exception("generation failed while streaming")
            message = "generation failed; the server logged the details"
        yield _event({"error": message, "error_type": "generation"})


def _stream_token(index: int, token: GeneratedToken, request: TGIRequest | None = None,
                  generation: Generation | None = None) -> dict:
    event = {"index": index, "token": token_json(token), "top_tokens": None, "generated_text": None, "details": None}
    if generation is not None:
        event["generated_text"] = request.full_text(tgi_text(generation))
        if request.details:
            event["details"] = {"finish_reason": generation.tgi_finish_reason,
                                "generated_tokens": generation.completion_tokens,
                                "seed": generation.seed, "input_length": generation.prompt_tokens}
    return event


def _event(payload: dict) -> bytes:
    return f"data:{json.dumps(payload, ensure_ascii=False)}\n\n".encode()
