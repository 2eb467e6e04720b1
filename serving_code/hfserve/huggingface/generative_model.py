"""text_generation and text2text_generation in-process: V1 / V2 requests and the OpenAI completion routes.

What one request may cost is bounded (tasks.generation.GenerationLimits): tokens per prompt and per request are
checked before generating, at most `max_queued` requests wait for the model (the engine runs one at a time; beyond
that a 429 / RESOURCE_EXHAUSTED at once), and every request, streamed or not, carries a StopSignal: its wall-clock
deadline, and the cancellation the front end sets when its client goes away (serving/cancellation.py). A stopped
generation ends within one step.
"""

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from ..config import ModelSettings
from ..engine.generator import GeneratorEngine, PreparedPrompt, StopSignal
from ..serving import cancellation
from ..serving.requests import TEXT_INPUT, parse_request
from ..serving.v2_tensors import to_infer_output
from ..tasks.generation import (
    GeneratedToken,
    Generation,
    GenerationLimits,
    GenerationParams,
    check_request_budget,
    check_total_tokens,
    generation_params,
    overloaded,
    text_pieces,
)
from ..tasks.handlers import V2Output
from ..tasks.params import InvalidRequest
from ..tasks.tokenization import load_tokenizer


class GenerativeModel(Model):
    def __init__(self, settings: ModelSettings, dtype: str = "auto", device: str = "auto",
                 limits: GenerationLimits = GenerationLimits()):
        super().__init__(settings.model_name)
        self.settings = settings
        self.dtype = dtype
        self.device = device
        self.limits = limits
        self.engine: GeneratorEngine | None = None
        # one thread per admitted request: each waits for the engine's lock looking at its own StopSignal
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=limits.max_queued + 1,
                                                               thread_name_prefix="generate")
        self._admitted = 0  # requests generating or waiting for the model (only the event loop changes it)

    def load(self) -> bool:
        tokenizer = load_tokenizer(self.settings.model_dir, self.settings.tokenizer)
        self.engine = GeneratorEngine.load(self.settings.model_dir, self.settings.task, self.dtype, self.device,
                                           self.settings.tokenizer.trust_remote_code, tokenizer=tokenizer)
        self.ready = True
        return True

    def validate(self, payload):
        return payload

    async def predict(self, payload: dict | InferRequest, headers: dict | None = None):
        try:
            request = parse_request(payload, self.settings.max_request_items)
            if any(isinstance(text, tuple) for text in request.texts):
                raise InvalidRequest("text pairs are for sequence_classification and rerank models, not generation")
            params = generation_params(request.params_raw)
            check_request_budget(len(request.texts), params.max_new_tokens, self.limits)
        except InvalidRequest as error:
            raise InvalidInput(str(error)) from None
        with self._admission():
            stop = self._stop_signal()
            try:
                prepared = await asyncio.to_thread(self._prepare_all, request.texts, params)
            except InvalidRequest as error:
                raise InvalidInput(str(error)) from None
            generations = [await self._generate(p, stop) for p in prepared]
        if not request.is_v2:
            return {"predictions": [{"generated_text": g.text, "finish_reason": g.finish_reason}
                                    for g in generations]}
        tensor = V2Output("generated_text", "BYTES", [len(generations)], [g.text for g in generations])
        return InferResponse(model_name=self.name, response_id=request.response_id,
                             use_binary_outputs=request.binary_outputs,
                             infer_outputs=[to_infer_output(tensor)])

    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        """The whole generation. An unusable prompt raises InvalidRequest."""
        with self._admission():
            stop = self._stop_signal()
            prepared = await asyncio.to_thread(self._prepare_all, [prompt], params)
            return await self._generate(prepared[0], stop)

    def _prepare_all(self, prompts: list, params: GenerationParams) -> list[PreparedPrompt]:
        prepared = [self.engine.prepare(prompt, params, self.limits) for prompt in prompts]
        check_total_tokens(((p.prompt_tokens, p.max_new_tokens) for p in prepared), self.limits)
        return prepared

    @contextmanager
    def _admission(self):
        if self._admitted > self.limits.max_queued:
            raise overloaded(self.limits)
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    def _stop_signal(self) -> StopSignal:
        return StopSignal(cancellation.current().cancelled, time.monotonic() + self.limits.timeout_s,
                          self.limits.timeout_s)

    async def _generate(self, prepared: PreparedPrompt, stop: StopSignal) -> Generation:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.engine.generate, prepared, stop)

    def stream_tokens(self, prompt: str, params: GenerationParams) -> AsyncIterator[GeneratedToken | Generation]:
        """Tokens as they are generated, then the finished Generation. The prompt is checked now, before the
        first token is asked for, so an unusable one raises InvalidRequest while a 4xx can still be sent."""
        return self._stream(prompt, params, lambda tokens: tokens)

    def stream(self, prompt: str, params: GenerationParams) -> AsyncIterator[str | Generation]:
        """Text pieces (never part of a stop sequence) as they are generated, then the finished Generation."""
        return self._stream(prompt, params, lambda tokens: text_pieces(tokens, params.stop))

    def _stream(self, prompt: str, params: GenerationParams, shape) -> AsyncIterator:
        # A full queue is refused now, while a 429 can still be sent; the stream is admitted when it is first
        # iterated (a stream that is never iterated, its client gone before the response started, holds nothing).
        if self._admitted > self.limits.max_queued:
            raise overloaded(self.limits)
        stop = self._stop_signal()
        prepared = self._prepare_all([prompt], params)[0]
        return self._iterate(shape(self.engine.tokens(prepared, stop)), stop)

    async def _iterate(self, iterator: Iterator, stop: StopSignal) -> AsyncIterator:
        loop = asyncio.get_running_loop()
        done = object()
        with self._admission():
            try:
                while (item := await loop.run_in_executor(self._executor, next, iterator, done)) is not done:
                    yield item
            finally:
                stop.cancelled.set()  # a client that leaves early stops the generation after the current token

    def chat_prompt(self, messages: list[dict]) -> str:
        tokenizer = self.engine.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidRequest("this model has no chat template; use /openai/v1/completions instead")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def count_tokens(self, text: str) -> int:
        return len(self.engine.tokenizer(text)["input_ids"])

    def get_input_types(self) -> list[dict]:
        return [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": "generated_text", "datatype": "BYTES", "shape": [-1]}]

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.ready = False
