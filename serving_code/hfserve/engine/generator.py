"""Text generation with transformers' generate(): greedy and deterministic unless sampling is asked for."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)

from ..tasks import Task
from ..tasks.detect import infer_task
from ..tasks.generation import Generation, GenerationParams
from .device import resolve_device, resolve_dtype


@dataclass
class _StopWatch(StoppingCriteria):
    """Stops generation once the decoded continuation contains a stop sequence."""

    tokenizer: object
    prompt_length: int
    stops: tuple[str, ...]
    hit: bool = field(default=False)

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        if not self.stops:
            return False
        text = self.tokenizer.decode(input_ids[0, self.prompt_length:], skip_special_tokens=True)
        self.hit = any(stop in text for stop in self.stops)
        return self.hit


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    positions = [text.find(s) for s in stops if s and s in text]
    return (text[: min(positions)], True) if positions else (text, False)


class GeneratorEngine:
    def __init__(self, model, tokenizer, task: Task, device: torch.device, max_positions: int | None):
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.device = device
        self.max_positions = max_positions
        self._lock = threading.Lock()  # one generate() at a time; torch uses every core already

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

    def _prepare(self, prompt: str, params: GenerationParams):
        max_new = params.max_new_tokens
        budget = None
        if self.task == Task.TEXT_GENERATION and self.max_positions:
            budget = max(1, self.max_positions - max_new)  # keep room for the new tokens: truncate from the left
        encoded = self.tokenizer(prompt, return_tensors="pt")
        ids = encoded["input_ids"][:, -budget:] if budget else encoded["input_ids"]
        mask = encoded["attention_mask"][:, -budget:] if budget else encoded["attention_mask"]
        if self.task == Task.TEXT_GENERATION and self.max_positions:
            max_new = max(1, min(max_new, self.max_positions - ids.shape[1]))
        kwargs = dict(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=max_new,
                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        prompt_length = ids.shape[1] if self.task == Task.TEXT_GENERATION else 0
        watch = _StopWatch(self.tokenizer, prompt_length, params.stop)
        kwargs["stopping_criteria"] = StoppingCriteriaList([watch])
        return kwargs, ids.shape[1], prompt_length, max_new, watch

    @torch.inference_mode()
    def generate(self, prompt: str, params: GenerationParams) -> Generation:
        kwargs, prompt_tokens, prompt_length, max_new, _ = self._prepare(prompt, params)
        with self._lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            output = self.model.generate(**kwargs)
        new_ids = output[0, prompt_length:]
        new_ids = new_ids[new_ids != (self.tokenizer.pad_token_id if self.task != Task.TEXT_GENERATION else -1)]
        text, stopped = cut_at_stop(self.tokenizer.decode(new_ids, skip_special_tokens=True), params.stop)
        ended_on_eos = self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id in new_ids.tolist()
        completion_tokens = len(new_ids)
        finish = "stop" if stopped or ended_on_eos or completion_tokens < max_new else "length"
        return Generation(text, finish, prompt_tokens, completion_tokens)

    def stream(self, prompt: str, params: GenerationParams) -> Iterator[str | Generation]:
        """Yields text pieces as they are generated, then the finished Generation."""
        kwargs, prompt_tokens, _, max_new, watch = self._prepare(prompt, params)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=self.task == Task.TEXT_GENERATION,
                                        skip_special_tokens=True)
        counter = {"tokens": 0}

        def run():
            try:
                with self._lock, torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    output = self.model.generate(**kwargs, streamer=streamer)
                    counter["tokens"] = output.shape[1] - (kwargs["input_ids"].shape[1]
                                                           if self.task == Task.TEXT_GENERATION else 1)
            except Exception as error:  # surfaced to the caller below, after unblocking the streamer
                counter["error"] = error
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        held = ""
        emitted = ""
        hold_back = max((len(s) for s in params.stop), default=1) - 1
        stopped = False
        for piece in streamer:
            held += piece
            text, stopped = cut_at_stop(emitted + held, params.stop)
            if stopped:
                if len(text) > len(emitted):
                    yield text[len(emitted):]
                emitted = text
                break
            safe = len(held) - hold_back if hold_back > 0 else len(held)
            if safe > 0:
                yield held[:safe]
                emitted += held[:safe]
                held = held[safe:]
        if not stopped and held:
            yield held
            emitted += held
        if stopped:
            for _ in streamer:  # we left the loop early: drain it so the generating thread can finish
                pass
        thread.join()
        if "error" in counter:
            raise counter["error"]
        finish = "stop" if stopped or watch.hit or counter["tokens"] < max_new else "length"
        yield Generation(emitted, finish, prompt_tokens, counter["tokens"])
