"""text_generation / text2text_generation: the sampling options a request may set, validated once, and what a
generation returns (whole, or token by token)."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import InputTooLong, Overloaded, Unavailable
from .params import InvalidRequest


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy decoding, deterministic; > 0: sampling
    top_p: float = 1.0
    top_k: int | None = None  # sampling: keep the k most likely tokens
    repetition_penalty: float | None = None
    typical_p: float | None = None
    truncate: int | None = None  # keep only the prompt's last `truncate` tokens
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def sampling(self) -> bool:
        return self.temperature > 0


@dataclass(frozen=True)
class GeneratedToken:
    """One generated token. `text` is what it adds to the decoded output: empty for special tokens, and empty
    while a multi-byte character is still incomplete (the next token then carries it)."""

    id: int
    text: str
    logprob: float
    special: bool


@dataclass
class Generation:
    text: str  # the decoded continuation, without special tokens, cut before a stop sequence
    finish_reason: str  # OpenAI's: "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    tokens: list[GeneratedToken] = field(default_factory=list)
    stop_sequence: str | None = None  # the stop sequence that ended it, if one did
    ended_on_eos: bool = False
    seed: int | None = None  # the seed sampling used (None: greedy)

    @property
    def tgi_finish_reason(self) -> str:
        """text-generation-inference's name for why generation ended."""
        if self.stop_sequence is not None:
            return "stop_sequence"
        return "eos_token" if self.ended_on_eos else "length"


@dataclass(frozen=True)
class GenerationLimits:
    """What one generation request may cost (config.GenerationConfig holds the flags and their help)."""

    max_input_tokens: int = 4096  # per prompt, after the request's own 'truncate'
    max_total_tokens: int = 8192  # per request: the sum over its prompts of prompt + max_new_tokens
    timeout_s: float = 300.0  # wall clock from admission (waiting for the model included) to the last token
    max_queued: int = 8  # requests waiting for the model beyond the one it is generating for


class GenerationTimedOut(Unavailable):
    """A generation passed --generation_timeout_s (HTTP 503, gRPC UNAVAILABLE): it was stopped, nothing is
    returned."""


class GenerationCancelled(InvalidRequest):
    """The client went away (HTTP disconnect, gRPC cancellation): nobody is left to read the answer, which is
    logged as a refused request (a 4xx: the client ended it), never as a server error."""


def check_request_budget(prompts: int, max_new_tokens: int, limits: GenerationLimits) -> None:
    """Before tokenizing: prompts x max_new_tokens alone may already be over the request's budget."""
    if prompts * max_new_tokens > limits.max_total_tokens:
        raise InvalidRequest(
            f"{prompts} prompt(s) x max_new_tokens {max_new_tokens} = {prompts * max_new_tokens} tokens to generate, "
            f"over this server's budget of {limits.max_total_tokens} tokens per request (--max_total_tokens: "
            f"prompt plus new tokens, summed over the request's prompts); send fewer prompts or fewer max_new_tokens")


def check_prompt_tokens(prompt_tokens: int, limits: GenerationLimits) -> None:
    if prompt_tokens > limits.max_input_tokens:
        raise InputTooLong(
            f"the prompt has {prompt_tokens} tokens, over this server's limit of {limits.max_input_tokens} "
            f"(--max_input_tokens); send a shorter prompt, or set 'truncate' to keep only its last tokens")


def check_total_tokens(costs: Iterable[tuple[int, int]], limits: GenerationLimits) -> None:
    """`costs`: (prompt tokens, max new tokens) of each prompt of one request."""
    costs = list(costs)
    total = sum(prompt + new for prompt, new in costs)
    if total > limits.max_total_tokens:
        raise InvalidRequest(
            f"this request needs up to {total} tokens ({len(costs)} prompt(s): prompt tokens plus max_new_tokens), "
            f"over this server's budget of {limits.max_total_tokens} tokens per request (--max_total_tokens); send "
            f"fewer or shorter prompts, or fewer max_new_tokens")


def overloaded(limits: GenerationLimits) -> Overloaded:
    return Overloaded(f"{limits.max_queued} generation requests are already waiting for the model "
                      f"(--max_queued_generations); retry later")


MAX_NEW_TOKENS_LIMIT = 4096
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 256  # a stream holds back up to this much text while it might be a stop sequence (review L9)


def generation_params(raw: dict | None, default_max_new_tokens: int = 64) -> GenerationParams:
    """Validates sampling options from a request's parameters (V1/V2) or an OpenAI body."""
    raw = raw or {}
    max_new = raw.get("max_new_tokens", raw.get("max_tokens", raw.get("max_completion_tokens")))
    max_new = default_max_new_tokens if max_new is None else max_new
    check_max_new_tokens(max_new)
    temperature = raw.get("temperature") or 0.0
    top_p = raw.get("top_p")
    top_p = 1.0 if top_p is None else top_p
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise InvalidRequest("temperature must be a number from 0 to 2")
    if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise InvalidRequest("top_p must be a number in (0, 1]")
    return GenerationParams(max_new_tokens=max_new, temperature=float(temperature), top_p=float(top_p),
                            stop=stop_sequences(raw.get("stop")), seed=check_seed(raw.get("seed")))


def check_max_new_tokens(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
        raise InvalidRequest(f"max_new_tokens must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}")
    return value


def stop_sequences(raw) -> tuple[str, ...]:
    stop = raw or ()
    stop = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stop, (list, tuple)) or len(stop) > MAX_STOP_SEQUENCES or not all(
            isinstance(s, str) and s for s in stop):
        raise InvalidRequest(f"stop must be a non-empty string or a list of at most {MAX_STOP_SEQUENCES} of them")
    if any(len(s) > MAX_STOP_CHARS for s in stop):
        raise InvalidRequest(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")
    return tuple(stop)


def check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise InvalidRequest("seed must be an integer from 0 to 2^64 - 1")
    return seed


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """The text before the first stop sequence in it, and that stop sequence (None if there is none)."""
    found = [(text.find(s), s) for s in stops if s and s in text]
    if not found:
        return text, None
    position, stop = min(found)
    return text[:position], stop


def text_pieces(tokens: Iterable[GeneratedToken | Generation], stops: tuple[str, ...]) -> Iterator[str | Generation]:
    """Generated tokens as text pieces that never show any part of a stop sequence, then the Generation.

    A piece is held back while its end could be the start of a stop sequence, so a client that concatenates
    the pieces gets exactly Generation.text.
    """
    hold_back = max((len(s) for s in stops), default=1) - 1
    emitted = ""
    held = ""
    for item in tokens:
        if isinstance(item, Generation):
            rest = item.text[len(emitted):]
            if rest:
                yield rest
            yield item
            return
        held += item.text
        safe = len(held) - hold_back
        if safe > 0 and cut_at_stop(emitted + held, stops)[1] is None:
            yield held[:safe]
            emitted += held[:safe]
            held = held[safe:]
