"""Dynamic batching for the in-process runtime: texts of concurrent requests share one forward pass.

While a forward pass runs, newly arrived texts wait in the queue; when it ends, everything waiting
(up to max_batch_size) forms the next batch. max_batch_delay_ms optionally holds a batch that is not
full yet a little longer. Each batch is padded to its own longest text, so a text's result does not
depend on its neighbours beyond float rounding.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

from prometheus_client import Histogram

BATCH_SIZE = Histogram(
    "hfserve_batch_size",
    "Number of texts in each forward pass the runtime ran",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], model_name: str,
                 max_batch_size: int = 32, max_batch_delay_ms: float = 0.0):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_delay_s = max(0.0, max_batch_delay_ms) / 1000.0
        self._histogram = BATCH_SIZE.labels(model_name=model_name)
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        # One thread runs the model: torch already uses every core inside a forward pass.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")

    async def submit(self, items: list[Any]) -> list[Any]:
        """Results for `items`, in order, computed in whatever batches the queue forms."""
        self._ensure_worker()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = self._queue or asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve_forever())

    async def _serve_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await self._fill(batch)
            await self._run(batch)

    async def _fill(self, batch: list) -> None:
        deadline = asyncio.get_running_loop().time() + self._max_delay_s
        while len(batch) < self._max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                return

    async def _run(self, batch: list) -> None:
        live = [(item, future) for item, future in batch if not future.cancelled()]
        if not live:
            return
        self._histogram.observe(len(live))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._run_batch, [item for item, _ in live])
        except Exception as error:  # the failure belongs to these requests, not to the batcher
            if len(live) == 1:
                if not live[0][1].done():
                    live[0][1].set_exception(error)
                return
            # One bad text must not fail its neighbours: run each alone, so only the failing ones fail.
            for pair in live:
                await self._run([pair])
            return
        for (_, future), result in zip(live, results):
            if not future.done():
                future.set_result(result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)
