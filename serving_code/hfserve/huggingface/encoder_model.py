"""Encoder tasks in-process: the shared EncoderTaskModel with a local EncoderEngine behind a DynamicBatcher."""

import time

import numpy as np

from ..config import ModelSettings
from ..engine.batcher import DynamicBatcher
from ..engine.loading import load_encoder_engine
from ..engine.passes import limits_for_device
from ..serving.encoder_model import FORWARD_SECONDS, EncoderTaskModel, split_rows
from ..tasks.tokenization import EncodedText


class InProcessEncoderModel(EncoderTaskModel):
    def __init__(self, settings: ModelSettings, dtype: str = "auto", device: str = "auto",
                 max_batch_size: int = 32, max_batch_delay_ms: float = 0.0, max_batch_tokens: int | None = None,
                 engine: str = "torch", quantize: str = "none", onnx_cache_dir=None):
        super().__init__(settings)
        self.dtype = dtype
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_batch_delay_ms = max_batch_delay_ms
        self.max_batch_tokens = max_batch_tokens
        self.engine_kind = engine
        self.quantize = quantize
        self.onnx_cache_dir = onnx_cache_dir
        self.engine = None  # EncoderEngine or OnnxEncoderEngine
        self.batcher: DynamicBatcher | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.engine.input_names

    def load(self) -> bool:
        self.engine = load_encoder_engine(
            self.settings.model_dir, self.settings.task, engine=self.engine_kind, dtype=self.dtype,
            device=self.device, trust_remote_code=self.settings.tokenizer.trust_remote_code,
            quantize=self.quantize, onnx_cache_dir=self.onnx_cache_dir,
        )
        self.load_text_side()
        limits = limits_for_device(self.engine.device.type, self.max_batch_size, self.max_batch_tokens)
        self.batcher = DynamicBatcher(self._forward_batch, self.name, limits.max_rows, self.max_batch_delay_ms,
                                      limits.max_tokens, limits.overhead_tokens)
        self.ready = True
        return self.ready

    def _forward_batch(self, encoded: list[EncodedText]) -> list[dict[str, np.ndarray]]:
        started = time.perf_counter()
        rows = split_rows(self.engine.forward(self.text_encoder.pad(encoded)), len(encoded))
        seconds = time.perf_counter() - started
        return [{**row, FORWARD_SECONDS: seconds} for row in rows]  # the request's timing splits queue/inference

    def batching_limits(self) -> dict:
        tokens = self.batcher.limits.max_tokens if self.batcher is not None else self.max_batch_tokens
        return {"max_batch_requests": self.max_batch_size, "max_batch_tokens": tokens}

    async def run_encoded(self, encoded: list[EncodedText]) -> list[dict[str, np.ndarray]]:
        return await self.batcher.submit(encoded)

    async def run_model(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.engine.forward(inputs)

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.ready = False
