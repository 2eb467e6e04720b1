"""Dynamic batching for the in-process runtime: texts of concurrent requests share forward passes.

Texts wait in arrival order. Whenever the model is free, the batcher plans passes over the oldest queued texts
(`engine/passes.py`: sorted by length, grouped so that padding costs less than an extra pass, bounded by
max_batch_size texts and max_batch_tokens padded tokens) and runs the group that holds the OLDEST text. So short
texts are not padded to a long one, and nobody starves: every pass serves the oldest waiting text, so a text with
k texts ahead of it runs within k passes, each pass bounded in tokens. The rest is re-planned with newcomers.

max_batch_delay_ms optionally holds the queue open a little when the model was idle. Each pass pads to its own
longest text, so a text's result does not depend on its neighbours beyond float rounding.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Gauge, Histogram

from .passes import CPU_MAX_BATCH_TOKENS, CPU_PASS_OVERHEAD_TOKENS, PassLimits, plan_passes

BATCH_SIZE = Histogram(
    "hfserve_batch_size",
    "Number of texts in each forward pass the runtime ran",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_TOKENS = Histogram(
    "hfserve_batch_padded_tokens",
    "Token positions (padding included) in each forward pass the runtime ran",
    ["model_name"],
    buckets=(16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384),
)
BATCH_COMPUTING_TEXTS = Gauge("hfserve_batch_computing_texts", "Texts in the forward pass running now (0: idle)",
                              ["model_name"])
BATCH_COMPUTING_TOKENS = Gauge("hfserve_batch_computing_tokens", "Token positions (padding included) of the forward "
                               "pass running now", ["model_name"])
# Passes are planned over at most this many batches' worth of the oldest texts (bounds the planning work).
PLANNING_WINDOW_BATCHES = 4


@dataclass
class _Waiting:
    item: Any
    length: int
    future: asyncio.Future


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], model_name: str,
                 max_batch_size: int = 32, max_batch_delay_ms: float = 0.0,
                 max_batch_tokens: int = CPU_MAX_BATCH_TOKENS, overhead_tokens: int = CPU_PASS_OVERHEAD_TOKENS,
                 length: Callable[[Any], int] = len):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_batch_tokens < 1:
            raise ValueError("max_batch_tokens must be at least 1")
        self._run_batch = run_batch
        self._length = length
        self._limits = PassLimits(max_batch_size, max_batch_tokens, overhead_tokens)
        self._max_delay_s = max(0.0, max_batch_delay_ms) / 1000.0
        self._histogram = BATCH_SIZE.labels(model_name=model_name)
        self._tokens = BATCH_TOKENS.labels(model_name=model_name)
        self._computing = (BATCH_COMPUTING_TEXTS.labels(model_name=model_name),
                           BATCH_COMPUTING_TOKENS.labels(model_name=model_name))
        self._queue: asyncio.Queue | None = None
        self._waiting: list[_Waiting] = []  # arrival order
        self._worker: asyncio.Task | None = None
        # One thread runs the model: torch already uses every core inside a forward pass.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")

    @property
    def limits(self) -> PassLimits:
        return self._limits

    async def submit(self, items: list[Any]) -> list[Any]:
        """Results for `items`, in order, computed in whatever passes the queue forms."""
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures):
            self._queue.put_nowait(_Waiting(item, self._length(item), future))
        return list(await asyncio.gather(*futures))

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = self._queue or asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve_forever())

    async def _serve_forever(self) -> None:
        while True:
            if not self._waiting and self._queue.empty():
                self._waiting.append(await self._queue.get())
                await self._hold_open()
            self._collect()
            batch = self.next_pass()
            if batch:
                await self._run(batch)

    async def _hold_open(self) -> None:
        """With max_batch_delay_ms, an idle model waits that long (or until a batch is full) for more texts."""
        deadline = asyncio.get_running_loop().time() + self._max_delay_s
        while len(self._waiting) + self._queue.qsize() < self._limits.max_rows:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                self._waiting.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                return

    def _collect(self) -> None:
        while not self._queue.empty():
            self._waiting.append(self._queue.get_nowait())
        self._waiting = [w for w in self._waiting if not w.future.cancelled()]

    def next_pass(self) -> list[_Waiting]:
        """Removes and returns the texts of the next forward pass: the planned group holding the oldest text."""
        if not self._waiting:
            return []
        window = self._waiting[:PLANNING_WINDOW_BATCHES * self._limits.max_rows]
        groups = plan_passes([w.length for w in window], self._limits)
        chosen = next(group for group in groups if 0 in group)
        batch = [window[i] for i in chosen]
        taken = set(chosen)
        self._waiting = [w for i, w in enumerate(self._waiting) if i not in taken]
        return batch

    async def _run(self, batch: list[_Waiting]) -> None:
        self._histogram.observe(len(batch))
        self._tokens.observe(len(batch) * max(w.length for w in batch))
        loop = asyncio.get_running_loop()
        self._computing[0].set(len(batch))
        self._computing[1].set(len(batch) * max(w.length for w in batch))
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [w.item for w in batch])
        except Exception as error:  # the failure belongs to these requests, not to the batcher
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(error)
                return
            # One bad text must not fail its neighbours: run each alone, so only the failing ones fail.
            for w in batch:
                await self._run([w])
            return
        finally:
            for gauge in self._computing:
                gauge.set(0)
        for w, result in zip(batch, results):
            if not w.future.done():
                w.future.set_result(result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
