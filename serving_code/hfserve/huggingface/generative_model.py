"""text_generation and text2text_generation in-process: V1 / V2 requests and the OpenAI completion routes."""

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Iterator

from kserve import InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from ..config import ModelSettings
from ..engine.generator import GeneratorEngine, PreparedPrompt
from ..serving.requests import TEXT_INPUT, parse_request
from ..serving.v2_tensors import to_infer_output
from ..tasks.generation import GeneratedToken, Generation, GenerationParams, generation_params, text_pieces
from ..tasks.handlers import V2Output
from ..tasks.params import InvalidRequest
from ..tasks.tokenization import load_tokenizer


class GenerativeModel(Model):
    def __init__(self, settings: ModelSettings, dtype: str = "auto", device: str = "auto"):
        super().__init__(settings.model_name)
        self.settings = settings
        self.dtype = dtype
        self.device = device
        self.engine: GeneratorEngine | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

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
            prepared = [self.engine.prepare(text, params) for text in request.texts]
        except InvalidRequest as error:
            raise InvalidInput(str(error)) from None
        generations = [await self._generate(p) for p in prepared]
        if not request.is_v2:
            return {"predictions": [{"generated_text": g.text, "finish_reason": g.finish_reason}
                                    for g in generations]}
        tensor = V2Output("generated_text", "BYTES", [len(generations)], [g.text for g in generations])
        return InferResponse(model_name=self.name, response_id=request.response_id,
                             use_binary_outputs=request.binary_outputs,
                             infer_outputs=[to_infer_output(tensor)])

    async def generate(self, prompt: str, params: GenerationParams) -> Generation:
        """The whole generation. An unusable prompt raises InvalidRequest."""
        return await self._generate(self.engine.prepare(prompt, params))

    async def _generate(self, prepared: PreparedPrompt) -> Generation:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.engine.generate, prepared)

    def stream_tokens(self, prompt: str, params: GenerationParams) -> AsyncIterator[GeneratedToken | Generation]:
        """Tokens as they are generated, then the finished Generation. The prompt is checked now, before the
        first token is asked for, so an unusable one raises InvalidRequest while a 4xx can still be sent."""
        prepared = self.engine.prepare(prompt, params)
        cancelled = threading.Event()
        return self._iterate(self.engine.tokens(prepared, cancelled), cancelled)

    def stream(self, prompt: str, params: GenerationParams) -> AsyncIterator[str | Generation]:
        """Text pieces (never part of a stop sequence) as they are generated, then the finished Generation."""
        prepared = self.engine.prepare(prompt, params)
        cancelled = threading.Event()
        return self._iterate(text_pieces(self.engine.tokens(prepared, cancelled), params.stop), cancelled)

    @staticmethod
    async def _iterate(iterator: Iterator, cancelled: threading.Event) -> AsyncIterator:
        loop = asyncio.get_running_loop()
        done = object()
        try:
            while (item := await loop.run_in_executor(None, next, iterator, done)) is not done:
                yield item
        finally:
            cancelled.set()  # a client that leaves early stops the generation after the current token

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
