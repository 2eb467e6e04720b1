"""Runtime 2's forward backend: the model on Triton, over gRPC (transformer/triton_client.py)."""

from __future__ import annotations

import asyncio

import numpy as np

from ..core.encoder_service import Forward, Rows, split_rows
from ..engine.passes import CPU_PASS_OVERHEAD_TOKENS, PassLimits, plan_passes
from ..tasks.tokenization import EncodedText, pad_encoded
from .triton_client import TritonClient

# What the tokenizer produces; only the ones Triton's model configuration lists are sent.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# How a request's own texts are split into Triton requests by length: rows and tokens are bounded by Triton's
# max_batch_size and model.py's passes, so only the padding-versus-another-request trade-off matters here.
REQUEST_SPLIT = PassLimits(max_rows=1 << 30, max_tokens=1 << 62, overhead_tokens=CPU_PASS_OVERHEAD_TOKENS)


class TritonBackend:
    def __init__(self, predictor_host: str, triton_model_name: str, timeout_s: float = 30.0):
        self.client = TritonClient(predictor_host, triton_model_name, timeout_s=timeout_s)
        self.pad_id = 0

    input_names = TOKEN_INPUTS
    dtype = None  # Triton's process knows it

    def load(self, pad_id: int) -> None:
        self.pad_id = pad_id

    async def _client(self) -> TritonClient:
        if not self.client.started:
            await self.client.start()
        return self.client

    async def ready(self) -> bool:
        """Whether Triton has the model ready (probed every 200 ms in the background once connected)."""
        return (await self._client()).ready

    def batching_limits(self) -> dict:
        """Triton's max_batch_size once its model configuration has been read (None before)."""
        return {"max_batch_requests": getattr(self.client, "max_batch_size", None) or None, "max_batch_tokens": None}

    async def forward(self, encoded: list[EncodedText]) -> Forward:
        """A request whose texts differ much in length goes to Triton as several requests, grouped by length, so
        its short texts are not padded to its long ones (a [b, T] tensor has one T); Triton batches them again."""
        groups = plan_passes([len(e) for e in encoded], REQUEST_SPLIT)
        if len(groups) <= 1:
            return Forward(rows=await self._rows(encoded))
        parts = await asyncio.gather(*(self._rows([encoded[i] for i in group]) for group in groups))
        rows: Rows = [None] * len(encoded)
        for group, part in zip(groups, parts):
            for index, row in zip(group, part):
                rows[index] = row
        return Forward(rows=rows)

    async def _rows(self, encoded: list[EncodedText]) -> Rows:
        return split_rows(await self.infer(pad_encoded(encoded, self.pad_id, self.input_names)), len(encoded))

    async def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One Triton request: a padded batch of int64 inputs -> named float32 outputs. While Triton is down this
        raises TritonUnavailable, an Unavailable: HTTP 503, gRPC UNAVAILABLE."""
        return await (await self._client()).infer(inputs)

    def stop(self) -> None:
        pass
