"""Text generation with transformers' generate(): greedy and deterministic unless sampling is asked for.

Every generation runs token by token through one `_TokenTap`: it decodes each new token (special tokens never
reach the text), records its log-probability, and ends generation at a stop sequence. The whole generation and
the streamed one are the same loop, so a stream always adds up to the whole answer.
"""

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from ..tasks import Task
from ..tasks.detect import infer_task
from ..tasks.generation import (
    GeneratedToken,
    Generation,
    GenerationCancelled,
    GenerationParams,
    GenerationTimedOut,
    check_prompt_tokens,
    cut_at_stop,
)
from ..tasks.params import InvalidRequest
from .device import resolve_device, resolve_dtype

logger = logging.getLogger("hfserve")


class _LogprobRecorder(LogitsProcessor):
    """Keeps the log-probabilities of the last step's final distribution (it runs after every other processor)."""

    def __init__(self):
        self.last: torch.Tensor | None = None

    def __call__(self, input_ids, scores):
        self.last = torch.log_softmax(scores[0].float(), dim=-1)
        return scores


class IncrementalDecoder:
    """Decodes one token at a time into text pieces that add up to the decoded sequence.

    Decoding a token alone loses context (SentencePiece word boundaries, multi-byte characters split over
    byte-level tokens), so each step decodes a short window ending at the new token and returns what it adds.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """What is still held back (an incomplete character stays as the replacement character)."""
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return after[len(before):]


class StopSignal:
    """Why a generation must end early: its client went away (`cancelled` set from the event loop or gRPC's
    callback) or its wall-clock deadline (time.monotonic()) passed. Checked after every step and while waiting
    for the model."""

    def __init__(self, cancelled: threading.Event | None = None, deadline: float | None = None,
                 timeout_s: float | None = None):
        self.cancelled = cancelled or threading.Event()
        self.deadline = deadline
        self.timeout_s = timeout_s

    def reason(self) -> str | None:
        if self.cancelled.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline"
        return None

    def raise_if_stopped(self, tokens: int) -> None:
        reason = self.reason()
        if reason == "cancelled":
            logger.info("generation stopped after %d generated tokens: the client went away", tokens)
            raise GenerationCancelled(f"the client went away after {tokens} generated tokens")
        if reason == "deadline":
            raise GenerationTimedOut(f"the generation took longer than this server's limit of {self.timeout_s:g} s "
                                     f"(--generation_timeout_s) and was stopped after {tokens} tokens; ask for fewer "
                                     f"max_new_tokens")


# How often a request waiting for the model looks at its StopSignal.
WAIT_POLL_S = 0.05


class _TokenTap(StoppingCriteria):
    """Called by generate() after every step with all ids so far: hands the new token on, stops at a stop sequence."""

    def __init__(self, tokenizer, special_ids: set[int], stops: tuple[str, ...], recorder: _LogprobRecorder,
                 on_token: Callable[[GeneratedToken], None], stop: StopSignal | None = None):
        self.stop = stop
        self.decoder = IncrementalDecoder(tokenizer)
        self.special_ids = special_ids
        self.stops = stops
        self.recorder = recorder
        self.on_token = on_token
        self.text = ""
        self.stop_sequence: str | None = None
        self.stopped_early = False  # by the StopSignal
        self.count = 0

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        token_id = int(input_ids[0, -1])
        logprob = float(self.recorder.last[token_id]) if self.recorder.last is not None else 0.0
        special = token_id in self.special_ids
        piece = "" if special else self.decoder.add(token_id)
        self.text += piece
        self.count += 1
        self.on_token(GeneratedToken(token_id, piece, logprob, special))
        if self.stops and piece:
            self.stop_sequence = cut_at_stop(self.text, self.stops)[1]
        if self.stop_sequence is not None:
            return True
        self.stopped_early = self.stop is not None and self.stop.reason() is not None
        return self.stopped_early


@dataclass
class PreparedPrompt:
    """A validated, tokenized prompt and the generate() arguments for it."""

    kwargs: dict
    prompt_tokens: int
    max_new_tokens: int
    params: GenerationParams
    seed: int | None


class GeneratorEngine:
    def __init__(self, model, tokenizer, task: Task, device: torch.device, max_positions: int | None):
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.device = device
        self.max_positions = max_positions
        self.special_ids = set(tokenizer.all_special_ids)
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {e for e in eos + [tokenizer.eos_token_id] if e is not None}
        self._lock = threading.Lock()  # one generate() at a time; torch uses every core already
        self.steps_run = 0  # generation steps run since load, every request together

    @classmethod
    def load(cls, model_dir: Path, task: Task | str | None = None, dtype: str = "auto", device: str = "auto",
             trust_remote_code: bool = False, tokenizer=None) -> "GeneratorEngine":
        task = infer_task(Path(model_dir), task)
        model_class = AutoModelForCausalLM if task == Task.TEXT_GENERATION else AutoModelForSeq2SeqLM
        torch_device = resolve_device(device)
        model = model_class.from_pretrained(str(model_dir), dtype=resolve_dtype(dtype, torch_device),
                                            trust_remote_code=trust_remote_code).to(torch_device).eval()
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
        config = model.config
        max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        return cls(model, tokenizer, task, torch_device, max_positions)

    def prepare(self, prompt: str, params: GenerationParams, limits=None) -> PreparedPrompt:
        """Tokenizes and checks a prompt: one with nothing to continue from is the client's mistake (4xx), and so
        is one over `limits.max_input_tokens` (tasks.generation.GenerationLimits) after its own 'truncate'."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("the prompt is empty; send some text to generate from")
        encoded = self.tokenizer(prompt, return_tensors="pt")
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        if all(int(t) in self.special_ids for t in ids[0]):
            raise InvalidRequest("the prompt has no tokens this model can read; send some text to generate from")
        if params.truncate is not None and ids.shape[1] > params.truncate:
            ids, mask = ids[:, -params.truncate:], mask[:, -params.truncate:]
        if limits is not None:
            check_prompt_tokens(int(ids.shape[1]), limits)
        keep = self._prompt_budget(params)
        if keep is not None and ids.shape[1] > keep:
            ids, mask = ids[:, -keep:], mask[:, -keep:]  # truncate from the left: the end of a prompt matters most
        max_new = params.max_new_tokens
        if self.task == Task.TEXT_GENERATION and self.max_positions:
            max_new = max(1, min(max_new, self.max_positions - ids.shape[1]))
        kwargs = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=max_new,
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        seed = params.seed
        if params.sampling:
            seed = random.getrandbits(63) if seed is None else seed
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p,
                          typical_p=params.typical_p or 1.0)
            if params.top_k is not None:  # else the checkpoint's generation config decides, as generate() does
                kwargs["top_k"] = params.top_k
        else:
            seed = None
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.repetition_penalty is not None:
            kwargs["repetition_penalty"] = params.repetition_penalty
        return PreparedPrompt(kwargs, int(ids.shape[1]), max_new, params, seed)

    def _prompt_budget(self, params: GenerationParams) -> int | None:
        limits = []
        if params.truncate is not None:
            limits.append(params.truncate)
        if self.task == Task.TEXT_GENERATION and self.max_positions:
            limits.append(max(1, self.max_positions - params.max_new_tokens))  # keep room for the new tokens
        return min(limits) if limits else None

    @torch.inference_mode()
    def _run(self, prepared: PreparedPrompt, on_token: Callable[[GeneratedToken], None],
             stop: StopSignal | None = None) -> tuple[Generation, str]:
        recorder = _LogprobRecorder()

        def counted(token: GeneratedToken) -> None:
            self.steps_run += 1  # under the lock: one generation at a time
            on_token(token)

        tap = _TokenTap(self.tokenizer, self.special_ids, prepared.params.stop, recorder, counted, stop)
        self._acquire(stop)
        try:
            if prepared.seed is not None:
                torch.manual_seed(prepared.seed)
            self.model.generate(**prepared.kwargs, logits_processor=LogitsProcessorList([recorder]),
                                stopping_criteria=StoppingCriteriaList([tap]))
        finally:
            self._lock.release()
        if tap.stopped_early:
            stop.raise_if_stopped(tap.count)
        rest = tap.decoder.flush()
        text, stop = cut_at_stop(tap.text + rest, prepared.params.stop)
        return Generation(text=text, finish_reason="", prompt_tokens=prepared.prompt_tokens,
                          completion_tokens=tap.count, stop_sequence=stop, seed=prepared.seed), rest

    def _acquire(self, stop: StopSignal | None) -> None:
        """Waits for the model; a request whose client left or whose deadline passed meanwhile leaves the queue."""
        if stop is None:
            self._lock.acquire()
            return
        while not self._lock.acquire(timeout=WAIT_POLL_S):
            stop.raise_if_stopped(0)

    def tokens(self, prepared: PreparedPrompt, stop: StopSignal | None = None
               ) -> Iterator[GeneratedToken | Generation]:
        """The generated tokens as they come, then the finished Generation (whose `tokens` lists them all).
        A StopSignal ends generation after the current step (the client went away, or the deadline passed)."""
        pending: queue.Queue = queue.Queue()
        outcome: dict = {}

        def run():
            try:
                outcome["generation"], outcome["rest"] = self._run(prepared, pending.put, stop)
            except BaseException as error:  # handed to the consumer below
                outcome["error"] = error
            finally:
                pending.put(None)

        threading.Thread(target=run, daemon=True, name="generate").start()
        generated: list[GeneratedToken] = []
        held: GeneratedToken | None = None  # the last token waits: the rest of the text may be flushed into it
        while (token := pending.get()) is not None:
            if held is not None:
                generated.append(held)
                yield held
            held = token
        if "error" in outcome:
            raise outcome["error"]
        if held is not None:
            if outcome["rest"]:
                held = _with_more_text(held, outcome["rest"])
            generated.append(held)
            yield held
        yield self._finish(outcome["generation"], generated, prepared)

    def _finish(self, generation: Generation, tokens: list[GeneratedToken], prepared: PreparedPrompt) -> Generation:
        generation.tokens = tokens
        generation.ended_on_eos = bool(tokens) and tokens[-1].id in self.eos_ids and generation.stop_sequence is None
        stopped = generation.stop_sequence is not None or generation.ended_on_eos
        generation.finish_reason = "stop" if stopped or len(tokens) < prepared.max_new_tokens else "length"
        return generation

    def generate(self, prepared: PreparedPrompt, stop: StopSignal | None = None) -> Generation:
        tokens: list[GeneratedToken] = []
        generation, rest = self._run(prepared, tokens.append, stop)
        if rest:
            tokens[-1] = _with_more_text(tokens[-1], rest)
        return self._finish(generation, tokens, prepared)


def _with_more_text(token: GeneratedToken, more: str) -> GeneratedToken:
    return GeneratedToken(token.id, token.text + more, token.logprob, token.special)
