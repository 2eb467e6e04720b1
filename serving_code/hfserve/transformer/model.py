"""The transformer's kserve Model: shared encoder pre/post-processing, the forward pass on Triton over gRPC."""

from __future__ import annotations

import asyncio

import numpy as np

from ..config import ModelSettings
from ..engine.passes import CPU_PASS_OVERHEAD_TOKENS, PassLimits, plan_passes
from ..serving.encoder_model import EncoderTaskModel
from ..tasks.tokenization import EncodedText
from .triton_client import TritonClient

# What the tokenizer produces; only the ones Triton's model configuration lists are sent.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# How a request's own texts are split into Triton requests by length: rows and tokens are bounded by Triton's
# max_batch_size and model.py's passes, so only the padding-versus-another-request trade-off matters here.
REQUEST_SPLIT = PassLimits(max_rows=1 << 30, max_tokens=1 << 62, overhead_tokens=CPU_PASS_OVERHEAD_TOKENS)


class TritonEncoderModel(EncoderTaskModel):
    def __init__(self, settings: ModelSettings, predictor_host: str, triton_model_name: str | None = None,
                 timeout_s: float = 30.0):
        super().__init__(settings)
        self.client = TritonClient(predictor_host, triton_model_name or settings.model_name, timeout_s=timeout_s)
        self._text_side_loaded = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return TOKEN_INPUTS

    def load(self) -> bool:
        # kserve calls load() again on every request while healthy() is False (Triton down): keep it cheap.
        if not self._text_side_loaded:
            self.load_text_side()
            self._text_side_loaded = True
        self.ready = True
        return self.ready

    async def _client(self) -> TritonClient:
        if not self.client.started:
            await self.client.start()
        return self.client

    async def healthy(self) -> bool:
        """True once the tokenizer is loaded. kserve also asks this before every request, which must then reach
        run_model and fail there with TritonUnavailable (a 503 naming the predictor) while Triton is down; the
        readiness endpoints add `predictor_ready()` (see serving/server.py)."""
        await self._client()
        return bool(self.ready)

    async def predictor_ready(self) -> bool:
        """Whether Triton has the model ready (probed every 200 ms in the background)."""
        client = await self._client()
        return bool(self.ready and client.ready)

    def batching_limits(self) -> dict:
        """Triton's max_batch_size once its model configuration has been read (None before)."""
        return {"max_batch_requests": getattr(self.client, "max_batch_size", None) or None, "max_batch_tokens": None}

    async def run_encoded(self, encoded: list[EncodedText]) -> list[dict[str, np.ndarray]]:
        """A request whose texts differ much in length goes to Triton as several requests, grouped by length, so
        its short texts are not padded to its long ones (a [b, T] tensor has one T); Triton batches them again."""
        groups = plan_passes([len(e) for e in encoded], REQUEST_SPLIT)
        if len(groups) <= 1:
            return await super().run_encoded(encoded)
        parts = await asyncio.gather(*(super(TritonEncoderModel, self).run_encoded([encoded[i] for i in group])
                                       for group in groups))
        results: list = [None] * len(encoded)
        for group, part in zip(groups, parts):
            for index, result in zip(group, part):
                results[index] = result
        return results

    async def run_model(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        client = await self._client()
        return await client.infer(inputs)  # TritonUnavailable is a PredictorUnavailable: HTTP 503, gRPC UNAVAILABLE

    def stop(self) -> None:
        self.ready = False
