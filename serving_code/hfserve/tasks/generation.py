"""text_generation / text2text_generation: the sampling options a request may set, validated once."""

from dataclasses import dataclass

from .params import InvalidRequest


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy decoding, deterministic
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int


MAX_NEW_TOKENS_LIMIT = 4096


def generation_params(raw: dict | None, default_max_new_tokens: int = 64) -> GenerationParams:
    """Validates sampling options from a request's parameters (V1/V2) or an OpenAI body."""
    raw = raw or {}
    max_new = raw.get("max_new_tokens", raw.get("max_tokens", raw.get("max_completion_tokens")))
    max_new = default_max_new_tokens if max_new is None else max_new
    if isinstance(max_new, bool) or not isinstance(max_new, int) or not 1 <= max_new <= MAX_NEW_TOKENS_LIMIT:
        raise InvalidRequest(f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}")
    temperature = raw.get("temperature") or 0.0
    top_p = raw.get("top_p")
    top_p = 1.0 if top_p is None else top_p
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise InvalidRequest("temperature must be a number from 0 to 2")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise InvalidRequest("top_p must be a number in (0, 1]")
    stop = raw.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise InvalidRequest("stop must be a non-empty string or a list of at most 4 of them")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("seed must be an integer")
    return GenerationParams(max_new_tokens=max_new, temperature=float(temperature), top_p=float(top_p),
                            stop=tuple(stop), seed=seed)
