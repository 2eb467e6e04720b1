"""Runtime 1's forward backend: the model in this process (engine/: torch or ONNX Runtime), with the texts of
concurrent requests grouped into forward passes by engine/batcher.py."""

import time

import numpy as np

from ..config import ModelSettings
from ..core.encoder_service import Forward, split_rows
from ..engine.batcher import DynamicBatcher
from ..engine.loading import load_encoder_engine
from ..engine.passes import limits_for_device
from ..engine.warmup import planned_max_length, warm_up, warmup_shapes
from ..tasks.tokenization import EncodedText, pad_encoded


class InProcessBackend:
    def __init__(self, settings: ModelSettings, dtype: str = "auto", device: str = "auto",
                 max_batch_size: int = 32, max_batch_delay_ms: float = 0.0, max_batch_tokens: int | None = None,
                 engine: str = "torch", quantize: str = "none", onnx_cache_dir=None):
        self.settings = settings
        self.dtype_option = dtype
        self.device = device
        self.max_batch_size = max_batch_size
        self.max_batch_delay_ms = max_batch_delay_ms
        self.max_batch_tokens = max_batch_tokens
        self.engine_kind = engine
        self.quantize = quantize
        self.onnx_cache_dir = onnx_cache_dir
        self.engine = None  # EncoderEngine or OnnxEncoderEngine
        self.batcher: DynamicBatcher | None = None
        self.pad_id = 0

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.engine.input_names

    @property
    def dtype(self) -> str | None:
        dtype = getattr(getattr(self.engine, "model", None), "dtype", None)
        return str(dtype).removeprefix("torch.") if dtype is not None else None

    def load(self, pad_id: int) -> None:
        settings = self.settings
        self.pad_id = pad_id
        self.engine = load_encoder_engine(
            settings.model_dir, settings.task, engine=self.engine_kind, dtype=self.dtype_option, device=self.device,
            trust_remote_code=settings.tokenizer.trust_remote_code, quantize=self.quantize,
            onnx_cache_dir=self.onnx_cache_dir,
        )
        limits = limits_for_device(self.engine.device.type, self.max_batch_size, self.max_batch_tokens)
        batcher = DynamicBatcher(self._forward_pass, settings.model_name, limits.max_rows,
                                 self.max_batch_delay_ms, limits.max_tokens, limits.overhead_tokens)
        # Before ready() can be true, in the batcher's forward thread (torch's OpenMP team belongs to the calling
        # thread, so a warm-up on this one would leave the first real pass cold).
        shapes = warmup_shapes(planned_max_length(settings.model_dir, settings.tokenizer.max_length), limits)
        batcher._executor.submit(warm_up, self.engine.forward, self.input_names, shapes, pad_id).result()
        self.batcher = batcher

    def _forward_pass(self, encoded: list[EncodedText]) -> list[tuple[dict[str, np.ndarray], float]]:
        """One pass of the batcher: each text's outputs, with the seconds the pass took."""
        started = time.perf_counter()
        rows = split_rows(self.engine.forward(pad_encoded(encoded, self.pad_id, self.input_names)), len(encoded))
        seconds = time.perf_counter() - started
        return [(row, seconds) for row in rows]

    async def forward(self, encoded: list[EncodedText]) -> Forward:
        done = await self.batcher.submit(encoded)
        # The texts may have shared passes with other requests' texts; the rest of the wait was queueing.
        return Forward(rows=[row for row, _ in done], forward_seconds=max(seconds for _, seconds in done))

    def batching_limits(self) -> dict:
        tokens = self.batcher.limits.max_tokens if self.batcher is not None else self.max_batch_tokens
        return {"max_batch_requests": self.max_batch_size, "max_batch_tokens": tokens}

    async def ready(self) -> bool:
        return self.batcher is not None

    def stop(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
